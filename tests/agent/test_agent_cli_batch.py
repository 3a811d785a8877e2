"""`scanner-agent batch`: a stack with barcode cover sheets is split per business into the outbox."""

from __future__ import annotations

from scanner_agent.cli import main
from scanner_agent.config import AgentConfig
from scanner_agent.outbox import Outbox


def test_batch_splits_by_cover_sheets(tmp_path) -> None:
    config = AgentConfig(data_dir=tmp_path, driver="demo",
                         driver_options={"pages": 2, "cover_sheet_serial": ["E202611230000001", "E202611230000002"]})
    config.save()
    assert main(["--data-dir", str(tmp_path), "batch", "--material", "APPLICATION", "--dpi", "100"]) == 0
    outbox = Outbox(config.outbox_dir, recover=False)
    pages = outbox.pending()
    outbox.close()
    by_serial: dict[str, int] = {}
    for page in pages:
        assert page.job_id is None and page.material_code == "APPLICATION"
        by_serial[page.business_serial] = by_serial.get(page.business_serial, 0) + 1
    assert set(by_serial) == {"E202611230000001", "E202611230000002"}
    assert sum(by_serial.values()) == len(pages) >= 2
