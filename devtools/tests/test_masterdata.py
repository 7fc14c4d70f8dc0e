"""Customer master data from CSV: a row's delivery address becomes ``customer.updated``'s
``delivery_address``; a row without one has none; a partial one is a bad row, reported without
its personal data; the demo customers all have one."""

from __future__ import annotations

import pytest

from orderflow.contracts.events import CustomerUpdated
from orderflow.devstack.catalogue import customers
from orderflow.devstack.masterdata import parse_rows

pytestmark = pytest.mark.unit

HEADER = ("customer_id,name,email,phone,language,credit_limit,currency,payment_terms,"
          "open_receivables,overdue_amount,overdue_days,blocked")
TERMS = "zh-CN,5000,CNY,net30,0,0.00,0,false"


def test_a_customers_delivery_address_is_read_from_its_row() -> None:
    report = parse_rows("customers", [
        HEADER + ",province,city,district,address,postal_code",
        f"C1,韩梅梅,a@example.com,13912345678,{TERMS},上海,上海,浦东新区,世纪大道 100 号,200120",
        f"C2,李雷,,13812345678,{TERMS},,,,,",
        f"C3,王芳,,13712345678,{TERMS},上海,,,,"])
    first, second = report.events
    assert isinstance(first, CustomerUpdated) and isinstance(second, CustomerUpdated)
    home = first.delivery_address
    assert home is not None
    assert (home.name, home.phone, home.province, home.city, home.district, home.line1,
            home.postal_code) == ("韩梅梅", "13912345678", "上海", "上海", "浦东新区",
                                  "世纪大道 100 号", "200120")
    assert second.delivery_address is None  # no address given: none
    # a province alone is no address: the row is refused, its values not repeated
    assert len(report.problems) == 1 and report.problems[0].startswith("4:")
    assert "王芳" not in report.problems[0] and "13712345678" not in report.problems[0]


def test_a_file_without_the_address_columns_still_loads() -> None:
    report = parse_rows("customers", [HEADER, f"C1,韩梅梅,,13912345678,{TERMS}"])
    assert report.problems == []
    assert isinstance(report.events[0], CustomerUpdated)
    assert report.events[0].delivery_address is None


def test_every_demo_customer_has_a_delivery_address() -> None:
    demo = customers()
    assert len(demo) == 100
    assert all(c.delivery_address is not None and c.delivery_address.phone == c.phone
               for c in demo.values())
