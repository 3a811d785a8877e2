"""Barcode association: serials from cover sheets and forms, splitting a mixed stack."""

from __future__ import annotations

from scanner_agent.barcode import find_serial, find_serial_hits, is_cover_sheet, split_batch
from scanner_agent.drivers import ScannedPage
from scanner_agent.drivers.base import convert_mode
from scanner_agent.drivers.demo_driver import render_blank, render_cover_sheet, render_document

DPI = 75


def test_serial_from_cover_sheet_qr_and_form_code128():
    assert find_serial(render_cover_sheet("ZC20240601-0007", dpi=DPI)) == "ZC20240601-0007"
    form = render_document("application", dpi=DPI, serial_barcode="BG-778899-01")
    hits = find_serial_hits(form)
    assert [h.serial for h in hits] == ["BG-778899-01"]
    assert "128" in hits[0].format
    assert find_serial(render_document("invoice", dpi=DPI)) is None


def test_serial_read_in_bw_and_rotated():
    cover = render_cover_sheet("ZC20240601-0008", dpi=DPI)
    assert find_serial(convert_mode(cover, "bw")) == "ZC20240601-0008"
    assert find_serial(cover.rotate(90, expand=True)) == "ZC20240601-0008"


def test_pattern_is_a_parameter():
    cover = render_cover_sheet("ZC20240601-0009", dpi=DPI)
    assert find_serial(cover, pattern=r"ZC\d{8}-\d{4}") == "ZC20240601-0009"
    assert find_serial(cover, pattern=r"NJ\d{10}") is None
    # too short for the default 8-32 character business serial
    assert find_serial(render_cover_sheet("AB-12", dpi=DPI)) is None


def test_cover_sheet_versus_form_with_barcode():
    cover = render_cover_sheet("ZC20240601-0010", dpi=DPI)
    form = render_document("application", dpi=DPI, serial_barcode="ZC20240601-0010")
    assert is_cover_sheet(cover, find_serial_hits(cover))
    assert not is_cover_sheet(form, find_serial_hits(form))


def test_split_a_three_business_stack():
    def page(i, image):
        return ScannedPage(i, image)

    stack = [
        render_document("invoice", dpi=DPI, seed=1),  # before any code: unassigned
        render_cover_sheet("ZC20240601-0001", dpi=DPI),
        render_document("id_copy", dpi=DPI, seed=2),
        render_document("invoice", dpi=DPI, seed=3),
        render_cover_sheet("ZC20240601-0002", dpi=DPI),
        render_document("conformity", dpi=DPI, seed=4),
        render_blank(dpi=DPI, seed=5),
        # business 3 is announced by its application form, which is a page of it
        render_document("application", dpi=DPI, seed=6, serial_barcode="ZC20240601-0003"),
        render_document("ccc", dpi=DPI, seed=7),
    ]
    pages = [page(i, im) for i, im in enumerate(stack)]
    groups = split_batch(pages)
    assert [(serial, [p.index for p in ps]) for serial, ps in groups] == [
        (None, [0]),
        ("ZC20240601-0001", [2, 3]),
        ("ZC20240601-0002", [5, 6]),
        ("ZC20240601-0003", [7, 8]),
    ]
    assert [[c.index for c in g.covers] for g in groups] == [[], [1], [4], []]
    # every page is somewhere: nothing dropped
    kept = sorted(p.index for g in groups for p in g.pages + g.covers)
    assert kept == list(range(len(stack)))

    with_covers = split_batch(pages, keep_cover_sheets=True)
    assert [len(ps) for _, ps in with_covers] == [1, 3, 3, 2]


def test_split_plain_images_and_repeated_serial():
    a = render_cover_sheet("ZC20240601-0004", dpi=DPI)
    form_same = render_document("application", dpi=DPI, serial_barcode="ZC20240601-0004")
    doc = render_document("invoice", dpi=DPI)
    groups = split_batch([a, form_same, doc, render_cover_sheet("ZC20240601-0005", dpi=DPI)])
    assert [(s, len(p)) for s, p in groups] == [("ZC20240601-0004", 2), ("ZC20240601-0005", 0)]
    assert split_batch([]) == []
