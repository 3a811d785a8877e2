"""Realistic synthetic registration records, for the demo, the simulator and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from portal.registry.models import BusinessStatus
from portal.registry.records import BusinessRecord

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟"
    "熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚"
    "桂英华建国建华志强玉兰桂兰海燕小红晓东文博子涵浩然欣怡梓萱宇轩诗涵俊杰雨桐思远嘉怡"
)
TYPE_WEIGHTS = [("REGISTER", 60), ("TRANSFER", 12), ("CHANGE", 6), ("DEREGISTER", 8),
                ("REPLACE", 7), ("THEFT", 3), ("CORRECTION", 2), ("LOCK", 2)]
_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"


def id_number(rng: random.Random, region: str = "310115") -> str:
    """A well-formed (checksummed) but fictitious resident ID number."""
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    body = f"{region}{birth:%Y%m%d}{rng.randrange(0, 1000):03d}"
    check = _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + check


def name(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))
    return rng.choice(SURNAMES) + given


def records(
    count: int,
    departments: Sequence[str],
    *,
    seed: int = 7,
    start: datetime,
    span: timedelta,
    serial_prefix: str = "E",
    clerks: Sequence[tuple[str, str]] = (),
) -> Iterator[BusinessRecord]:
    """`count` records spread over [start, start+span), deterministic for a given seed."""
    rng = random.Random(seed)
    types, weights = zip(*TYPE_WEIGHTS, strict=True)
    step = span / max(count, 1)
    for i in range(count):
        accepted = start + step * i + timedelta(seconds=rng.randrange(0, 60))
        status = rng.choices(
            [BusinessStatus.FINISHED, BusinessStatus.ACCEPTED, BusinessStatus.WITHDRAWN], [85, 13, 2]
        )[0]
        finished = accepted + timedelta(minutes=rng.randrange(5, 90)) if status == BusinessStatus.FINISHED else None
        clerk_code, clerk_name = rng.choice(clerks) if clerks else (f"J{rng.randrange(1000, 9999)}", name(rng))
        yield BusinessRecord(
            serial=f"{serial_prefix}{accepted:%Y%m%d}{i:07d}",
            business_type_code=rng.choices(types, weights)[0],
            department_code=rng.choice(departments),
            accepted_at=accepted,
            finished_at=finished,
            status=status,
            plate_number=f"沪{rng.choice('ABCDEFGHJK')}{rng.randrange(0, 100000):05d}",
            vehicle_code="".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(15)),
            owner_name=name(rng),
            owner_id_number=id_number(rng),
            phone=f"1{rng.choice('3589')}{rng.randrange(0, 10**9):09d}",
            clerk_code=clerk_code,
            clerk_name=clerk_name,
            updated_at=finished or accepted,
        )
