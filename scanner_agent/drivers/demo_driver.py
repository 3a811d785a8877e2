"""Demo driver: renders realistic synthetic A4 document pages with Pillow.

For demos, tests and development without a scanner.  Pages look like the materials of an
e-bike registration (ID card copy, purchase invoice, application form, certificate of
conformity, ...): a Chinese title, a table of fields, some text lines and a red stamp.

Configuration (``get_driver("demo", ...)``):

* ``pages`` -- document pages per business (default 3);
* ``cover_sheet_serial`` -- a serial (or a list of serials): each business starts with a
  cover sheet carrying the serial as a QR code plus the human-readable serial;
* ``form_serial`` -- print this serial as a Code128 barcode on the first document page
  (an application form), the other way of associating a batch;
* ``blank_every`` -- every K-th document page is blank (scanner noise only);
* ``seed`` -- deterministic content; ``delay`` -- seconds per page (to simulate a device);
* ``error_after`` / ``error_code`` -- raise that error (e.g. ``"paper_jam"``) after N pages.

The ``flatbed`` source delivers one page per scan; a feeder source delivers the whole stack.
"""

from __future__ import annotations

import functools
import os
import random
import threading
from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .base import (
    SOURCE_FEEDER,
    SOURCE_FLATBED,
    DeviceInfo,
    ScannedPage,
    ScannerDriver,
    ScanOptions,
    convert_mode,
)
from .errors import FeederEmpty, ScanCancelled, UnsupportedSetting, error_from_code

A4_MM = (210.0, 297.0)

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simsun.ttc",
)

# (material code, title, field labels)
MATERIALS: list[tuple[str, str, list[str]]] = [
    ("id_copy", "居民身份证复印件", ["姓名", "性别", "民族", "出生", "住址", "公民身份号码"]),
    (
        "invoice",
        "机动车销售统一发票",
        ["购买方名称", "身份证号码", "车辆类型", "厂牌型号", "车架号码", "价税合计", "销货单位"],
    ),
    (
        "application",
        "非机动车注册登记申请表",
        ["申请人", "证件号码", "联系电话", "住所地址", "品牌型号", "整车编码", "电动机编码"],
    ),
    (
        "conformity",
        "电动自行车产品合格证",
        ["产品名称", "产品型号", "整车编码", "电动机编码", "生产日期", "整车质量", "最高车速"],
    ),
    ("ccc", "中国国家强制性产品认证证书", ["证书编号", "委托人", "生产者", "产品名称", "型号规格"]),
    ("transfer", "非机动车转移登记证明", ["原所有人", "现所有人", "号牌号码", "转移原因", "办理日期"]),
]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红"
_TEXT_LINES = [
    "本人承诺所提交的材料真实、有效，如有虚假愿承担相应法律责任。",
    "经核对，车辆整车编码、电动机编码与合格证记载一致。",
    "申请人已按规定缴纳相关费用，资料齐全，符合登记条件。",
    "本证明仅用于非机动车登记业务，复印无效。",
    "车辆技术参数符合《电动自行车安全技术规范》（GB 17761-2018）。",
    "请于办理完毕后妥善保管号牌及行驶证件，遗失应及时申请补领。",
    "以上信息由登记窗口工作人员当场核验，并留存影像资料备查。",
]


@functools.lru_cache(maxsize=64)
def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A CJK-capable font of ``size`` px, or Pillow's default font when none is installed."""
    extra = os.environ.get("SCANNER_AGENT_CJK_FONT")
    for path in ((extra,) if extra else ()) + CJK_FONT_CANDIDATES:
        if path and os.path.exists(path):
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size)
    except TypeError:  # pragma: no cover - very old Pillow
        return ImageFont.load_default()


def page_size_px(dpi: int, size_mm: tuple[float, float] = A4_MM) -> tuple[int, int]:
    return round(size_mm[0] / 25.4 * dpi), round(size_mm[1] / 25.4 * dpi)


class _Canvas:
    def __init__(self, dpi: int, size_mm: tuple[float, float] = A4_MM) -> None:
        self.dpi = dpi
        self.image = Image.new("RGB", page_size_px(dpi, size_mm), "white")
        self.draw = ImageDraw.Draw(self.image)

    def mm(self, value: float) -> int:
        return round(value / 25.4 * self.dpi)

    def text(self, x_mm, y_mm, text, size_mm, fill=(20, 20, 20), anchor="la") -> None:
        font = load_font(max(6, self.mm(size_mm)))
        self.draw.text((self.mm(x_mm), self.mm(y_mm)), text, font=font, fill=fill, anchor=anchor)

    def line_width(self, mm: float = 0.35) -> int:
        return max(1, self.mm(mm))


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _field_value(label: str, rng: random.Random) -> str:
    if label == "性别":
        return rng.choice("男女")
    if label == "民族":
        return "汉"
    if "号码" in label and ("身份" in label or "证件" in label):
        return f"3201{rng.randint(10, 99)}19{rng.randint(60, 99)}{rng.randint(1000, 1299)}{rng.randint(1000, 9999)}"
    if "电话" in label:
        return f"1{rng.choice('3589')}{rng.randint(100000000, 999999999)}"
    if "编码" in label or "车架" in label:
        return f"{rng.choice('ABCDEFGH')}{rng.randint(10**12, 10**13 - 1)}"
    if "日期" in label or label == "出生":
        return f"20{rng.randint(10, 24)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"
    if label in ("姓名", "申请人", "原所有人", "现所有人", "购买方名称", "委托人"):
        return _person(rng)
    if "地址" in label or label == "住址" or label == "住所地址":
        return f"江苏省南京市{rng.choice(['玄武', '秦淮', '鼓楼', '江宁'])}区{rng.randint(1, 300)}号"
    if "合计" in label:
        return f"¥{rng.randint(1800, 6800)}.00"
    return rng.choice(["雅迪", "爱玛", "台铃", "新日", "绿源"]) + f"TDT{rng.randint(100, 999)}Z"


def _draw_stamp(canvas: _Canvas, cx_mm: float, cy_mm: float, rng: random.Random) -> None:
    red = (200, 30, 40)
    r = canvas.mm(20)
    cx, cy = canvas.mm(cx_mm), canvas.mm(cy_mm)
    width = max(2, canvas.mm(1.2))
    canvas.draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=red, width=width)
    star = canvas.mm(5)
    canvas.draw.regular_polygon((cx, cy, star), 5, rotation=rng.randint(-8, 8), fill=red)
    canvas.text(cx_mm, cy_mm + 9, "业务专用章", 3.6, fill=red, anchor="mm")
    canvas.text(cx_mm, cy_mm - 11, "交通警察支队", 3.2, fill=red, anchor="mm")


def _speckle(canvas: _Canvas, rng: random.Random, count: int) -> None:
    """Scanner dust: a few isolated dark pixels."""
    w, h = canvas.image.size
    for _ in range(count):
        x, y = rng.randrange(w), rng.randrange(h)
        canvas.image.putpixel((x, y), (rng.randint(60, 140),) * 3)


def render_document(
    material: str | None = None,
    *,
    dpi: int = 200,
    seed: int = 0,
    serial_barcode: str | None = None,
) -> Image.Image:
    """Render one synthetic document page (RGB).  ``material`` is a code of :data:`MATERIALS`
    (random when None); ``serial_barcode`` prints a Code128 of that serial in the header."""
    rng = random.Random(seed)
    if material is None:
        code, title, labels = rng.choice(MATERIALS)
    else:
        matches = [m for m in MATERIALS if m[0] == material]
        if not matches:
            raise ValueError(f"unknown demo material {material!r}")
        code, title, labels = matches[0]
    c = _Canvas(dpi)
    lw = c.line_width()
    c.text(105, 26, title, 8, anchor="mm")
    c.text(20, 34, f"编号：NJ{rng.randint(10**7, 10**8 - 1)}", 3.5)
    c.text(190, 34, f"填表日期：2024年{rng.randint(1, 12)}月{rng.randint(1, 28)}日", 3.5, anchor="ra")
    if serial_barcode:
        _paste_code128(c, serial_barcode, right_mm=200, y_mm=4, w_mm=55, h_mm=8)

    top = 42.0
    if code == "id_copy":
        # front and back of an ID card, 85.6 x 54 mm, with a few fields
        for i, y in enumerate((top, top + 64)):
            box = (c.mm(62), c.mm(y), c.mm(62 + 85.6), c.mm(y + 54))
            c.draw.rounded_rectangle(box, radius=c.mm(3), outline=(60, 60, 60), width=lw)
            if i == 0:
                for j, label in enumerate(labels[:5]):
                    c.text(66, y + 6 + j * 8, f"{label}  {_field_value(label, rng)}", 3.0)
                c.text(66, y + 46, f"公民身份号码  {_field_value('公民身份号码', rng)}", 3.0)
                c.draw.rectangle(
                    (c.mm(122), c.mm(y + 8), c.mm(144), c.mm(y + 36)),
                    outline=(90, 90, 90),
                    width=lw,
                )
            else:
                c.text(105, y + 10, "中华人民共和国", 4.5, anchor="mm")
                c.text(105, y + 20, "居民身份证", 5.5, anchor="mm")
                c.text(70, y + 38, f"签发机关  南京市公安局{rng.choice('玄武秦淮鼓楼')}分局", 3.0)
                c.text(70, y + 45, f"有效期限  2016.0{rng.randint(1, 9)}.01-2036.01.01", 3.0)
        text_top = top + 130
    else:
        row_h = 11.0
        x0, x1, split = 20.0, 190.0, 62.0
        for i, label in enumerate(labels):
            y = top + i * row_h
            c.draw.rectangle((c.mm(x0), c.mm(y), c.mm(x1), c.mm(y + row_h)), outline=(40, 40, 40), width=lw)
            c.draw.line((c.mm(split), c.mm(y), c.mm(split), c.mm(y + row_h)), fill=(40, 40, 40), width=lw)
            c.text(x0 + 3, y + row_h / 2, label, 4.0, anchor="lm")
            c.text(split + 4, y + row_h / 2, _field_value(label, rng), 4.0, anchor="lm")
        text_top = top + len(labels) * row_h + 12
    for i, line in enumerate(rng.sample(_TEXT_LINES, k=rng.randint(3, 5))):
        c.text(22, text_top + i * 8, line, 3.8)
    c.text(120, 250, f"经办人：{_person(rng)}", 4.0)
    _draw_stamp(c, 150, 235, rng)
    _speckle(c, rng, 30)
    return c.image


def render_blank(*, dpi: int = 200, seed: int = 0) -> Image.Image:
    """A scanned blank sheet: paper slightly off-white, dust specks, a faint edge shadow."""
    rng = random.Random(seed)
    c = _Canvas(dpi)
    c.image.paste((246, 246, 244), (0, 0, *c.image.size))
    shadow = max(2, c.mm(1.5))
    c.draw.rectangle((0, 0, c.image.width, shadow), fill=(150, 150, 150))
    _speckle(c, rng, 60)
    return c.image


def render_cover_sheet(serial: str, *, dpi: int = 200) -> Image.Image:
    """A dedicated cover sheet: title, the serial as a QR code and in human-readable form."""
    c = _Canvas(dpi)
    c.text(105, 40, "业务材料扫描封面", 9, anchor="mm")
    qr = make_qr_image(serial, target_px=c.mm(60))
    x = (c.image.width - qr.width) // 2
    c.image.paste(qr.convert("RGB"), (x, c.mm(70)))
    c.text(105, 70 + 60 + 14, f"流水号：{serial}", 7, anchor="mm")
    c.text(105, 275, "请将本页置于该笔业务材料之前一并扫描", 4, fill=(90, 90, 90), anchor="mm")
    return c.image


def make_qr_image(text: str, *, target_px: int) -> Image.Image:
    """A QR code of ``text`` scaled to about ``target_px`` (mode L), with its quiet zone."""
    try:
        import qrcode

        qr = qrcode.QRCode(box_size=1, border=4, error_correction=qrcode.constants.ERROR_CORRECT_M)
        qr.add_data(text)
        qr.make(fit=True)
        base = qr.make_image(fill_color="black", back_color="white").get_image().convert("L")
    except ImportError:  # pragma: no cover - qrcode is a declared dependency
        base = _zxing_image(text, "QRCode")
    scale = max(1, target_px // base.width)
    return base.resize((base.width * scale, base.height * scale), Image.Resampling.NEAREST)


def _zxing_image(text: str, fmt: str, scale: int = 1) -> Image.Image:
    import zxingcpp

    barcode = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    view = memoryview(barcode.to_image(scale=scale, add_quiet_zones=True))
    height, width = view.shape[0], view.shape[1]
    return Image.frombuffer("L", (width, height), bytes(view), "raw", "L", 0, 1)


def _paste_code128(c: _Canvas, text: str, *, right_mm: float, y_mm: float, w_mm: float, h_mm: float):
    """Paste a Code128 of ``text`` right-aligned at ``right_mm`` from the left edge."""
    base = _zxing_image(text, "Code128")
    scale = max(1, c.mm(w_mm) // base.width)
    code = base.resize((base.width * scale, max(c.mm(h_mm), 20)), Image.Resampling.NEAREST)
    x = max(0, c.mm(right_mm) - code.width)
    c.image.paste(code.convert("RGB"), (x, c.mm(y_mm)))
    center_mm = (x + code.width / 2) / c.dpi * 25.4
    c.text(center_mm, y_mm + h_mm + 2.5, text, 2.6, anchor="mm")


class DemoDriver(ScannerDriver):
    name = "demo"
    DEVICE_ID = "demo:0"

    def __init__(
        self,
        pages: int = 3,
        blank_every: int | None = None,
        cover_sheet_serial: str | list[str] | None = None,
        form_serial: str | None = None,
        seed: int = 0,
        materials: list[str] | None = None,
        delay: float = 0.0,
        error_after: int | None = None,
        error_code: str = "paper_jam",
    ) -> None:
        if pages < 0:
            raise ValueError("pages must be >= 0")
        if blank_every is not None and blank_every < 1:
            raise ValueError("blank_every must be >= 1")
        self.pages = pages
        self.blank_every = blank_every
        if isinstance(cover_sheet_serial, str):
            cover_sheet_serial = [cover_sheet_serial]
        self.cover_serials = list(cover_sheet_serial or [])
        self.form_serial = form_serial
        self.seed = seed
        self.materials = list(materials) if materials else None
        self.delay = delay
        self.error_after = error_after
        self.error_code = error_code

    def list_devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                id=self.DEVICE_ID,
                vendor="Demo",
                model="Synthetic A4 document scanner",
                kind="virtual",
                sources=[SOURCE_FLATBED, SOURCE_FEEDER],
            )
        ]

    def capabilities(self, device_id: str) -> dict[str, Any]:
        self._check_device(device_id)
        return {
            "sources": [SOURCE_FLATBED, SOURCE_FEEDER],
            "raw_sources": [SOURCE_FLATBED, SOURCE_FEEDER],
            "color_modes": ["color", "gray", "bw"],
            "dpi": [75, 100, 150, 200, 300, 600],
            "duplex": False,
            "max_area_mm": ((0.0, 0.0), A4_MM),
        }

    def _check_device(self, device_id: str) -> None:
        if device_id != self.DEVICE_ID:
            from .errors import DeviceOffline

            raise DeviceOffline(f"no demo device {device_id!r}")

    def stack(self, dpi: int) -> Iterator[tuple[str, Image.Image]]:
        """The page stack as (kind, RGB image); kind is 'cover', 'blank' or 'document'."""
        groups: list[str | None] = self.cover_serials or [None]
        doc_no = 0
        for g, serial in enumerate(groups):
            if serial is not None:
                yield "cover", render_cover_sheet(serial, dpi=dpi)
            for i in range(self.pages):
                doc_no += 1
                if self.blank_every and doc_no % self.blank_every == 0:
                    yield "blank", render_blank(dpi=dpi, seed=self.seed * 1000 + doc_no)
                    continue
                material = None
                if self.materials:
                    material = self.materials[(doc_no - 1) % len(self.materials)]
                barcode = None
                if i == 0 and self.form_serial and g == 0:
                    material, barcode = "application", self.form_serial
                yield (
                    "document",
                    render_document(material, dpi=dpi, seed=self.seed * 1000 + doc_no, serial_barcode=barcode),
                )

    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event) -> Iterator[ScannedPage]:
        self._check_device(device_id)
        if options.duplex:
            raise UnsupportedSetting("the demo scanner has no duplex unit")
        if options.source not in (SOURCE_FLATBED, SOURCE_FEEDER):
            raise UnsupportedSetting(f"unknown source {options.source!r}")
        feeder = options.source == SOURCE_FEEDER
        count = 0
        for kind, image in self.stack(options.dpi):
            if cancel.is_set():
                raise ScanCancelled(pages_received=count)
            if self.error_after is not None and count >= self.error_after:
                raise error_from_code(self.error_code, f"demo: injected {self.error_code}", pages_received=count)
            if self.delay and cancel.wait(self.delay):
                raise ScanCancelled(pages_received=count)
            page = convert_mode(image, options.color_mode)
            page.info["dpi"] = (options.dpi, options.dpi)
            yield ScannedPage(index=count, image=page, meta={"driver": self.name, "kind": kind})
            count += 1
            if not feeder or (options.max_pages is not None and count >= options.max_pages):
                return
        if count == 0:
            raise FeederEmpty("demo: no pages configured", pages_received=0)
