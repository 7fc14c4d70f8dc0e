"""Regenerate the demo master data (deterministic): ``python -m orderflow.devstack.demo_data.generate``.

300 SKUs in several categories with names, specs, prices, tax rates and weights; 100 customers
with credit profiles (some over their limit, some overdue, some prepaid, some COD, two blocked)
and delivery addresses;
six warehouses in six provinces; stock spread over them, with some SKUs scarce."""

from __future__ import annotations

import csv
import random
from decimal import Decimal
from pathlib import Path

from orderflow.devstack.catalogue import ADDRESSES

HERE = Path(__file__).parent

CATEGORIES = [
    # prefix, name, specs, price range (yuan), tax rate, weight range (kg)
    ("TEA", "茶叶礼盒", ["250g 铁盒", "500g 礼盒", "100g 袋装"], (68, 688), "0.09", (0.2, 1.2)),
    ("RICE", "东北大米", ["5kg 袋装", "10kg 袋装", "2.5kg 真空"], (39, 129), "0.09", (2.5, 10.5)),
    ("KETL", "电热水壶", ["1.5L 不锈钢", "1.7L 玻璃", "0.8L 便携"], (89, 399), "0.13", (0.8, 1.6)),
    ("FAN", "落地风扇", ["七叶 遥控", "五叶 机械", "塔扇 静音"], (129, 599), "0.13", (3.5, 7.0)),
    ("SHRT", "纯棉衬衫", ["M 白色", "L 蓝色", "XL 条纹"], (99, 359), "0.13", (0.2, 0.5)),
    ("BOOK", "图书", ["平装", "精装", "套装"], (25, 198), "0.09", (0.3, 2.2)),
    ("PHCS", "手机壳", ["iPhone 硅胶", "华为 磨砂", "小米 透明"], (19, 89), "0.13", (0.05, 0.15)),
    ("MILK", "纯牛奶", ["250ml×12 盒", "250ml×24 盒", "1L×6 盒"], (45, 139), "0.09", (3.2, 6.4)),
    ("LAMP", "LED 台灯", ["护眼 三档", "充电 折叠", "智能 调光"], (79, 459), "0.13", (0.6, 1.8)),
    ("SERV", "安装服务", ["上门安装", "延保一年", "以旧换新"], (30, 300), "0.06", (0.0, 0.0)),
]
WAREHOUSES = [
    ("WH-SH", "上海青浦仓", "上海", "上海"),
    ("WH-GZ", "广州白云仓", "广东", "广州"),
    ("WH-BJ", "北京大兴仓", "北京", "北京"),
    ("WH-CD", "成都双流仓", "四川", "成都"),
    ("WH-WH", "武汉东西湖仓", "湖北", "武汉"),
    ("WH-HZ", "杭州萧山仓", "浙江", "杭州"),
]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]
COMPANIES = ["贸易有限公司", "商贸有限公司", "电子商务有限公司", "供应链有限公司", "百货商行"]
CITIES = ["上海", "广州", "北京", "成都", "武汉", "杭州", "南京", "深圳", "西安", "长沙"]


def generate(seed: int = 20261126) -> None:
    rnd = random.Random(seed)
    products = []
    for prefix, name, specs, (lo, hi), tax, (wlo, whi) in CATEGORIES:
        for i in range(30):
            spec = specs[i % len(specs)]
            sku = f"{prefix}-{i + 1:03d}"
            price = Decimal(rnd.randint(lo * 100, hi * 100)) / 100
            weight = Decimal(str(round(rnd.uniform(wlo, whi), 3)))
            active = not (i == 29 and prefix in {"FAN", "BOOK"})  # two discontinued SKUs
            products.append([sku, f"{name} {i + 1:02d}", spec, f"{price:.2f}", "CNY", tax,
                             f"{weight}", "true" if active else "false", str(rnd.choice([5, 10, 20]))])
    with (HERE / "products.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sku", "name", "spec", "unit_price", "currency", "tax_rate", "weight_kg",
                    "active", "reorder_point"])
        w.writerows(products)

    customers = []
    for i in range(100):
        cid = f"C{i + 1:04d}"
        company = i % 3 == 0
        name = (f"{rnd.choice(CITIES)}{rnd.choice(SURNAMES)}氏{rnd.choice(COMPANIES)}" if company
                else rnd.choice(SURNAMES) + "".join(rnd.choices(GIVEN, k=rnd.choice([1, 2]))))
        limit = Decimal(rnd.choice([5000, 20000, 50000, 100000, 300000]))
        receivables = (limit * Decimal(rnd.choice(["0", "0.1", "0.3", "0.5"]))).quantize(Decimal(1))
        overdue, days, blocked = Decimal(0), 0, False
        terms = rnd.choice(["net30", "net30", "net60", "net15"])
        if i % 10 == 3:  # near or over the limit
            receivables = limit - Decimal(rnd.choice([0, 100, 500]))
        if i % 10 == 5:  # overdue
            overdue, days = (receivables or Decimal(2000)) / 2, rnd.choice([15, 45, 90])
        if i % 10 == 7:
            terms = "prepaid"
        if i % 10 == 8:
            terms = "cod"
        if i in (41, 87):
            blocked = True
        language = "en" if i % 9 == 4 else "zh-CN"
        channel = rnd.choice(["email", "email", "sms", "webhook"])
        customers.append([cid, name, f"buyer{i + 1:03d}@example.com",
                          f"13{rnd.randint(100000000, 999999999)}", language, f"{limit}", "CNY",
                          terms, f"{receivables}", f"{overdue:.2f}", str(days),
                          "true" if blocked else "false", channel,
                          *ADDRESSES[i % len(ADDRESSES)]])
    with (HERE / "customers.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "name", "email", "phone", "language", "credit_limit",
                    "currency", "payment_terms", "open_receivables", "overdue_amount",
                    "overdue_days", "blocked", "preferred_channel", "province", "city",
                    "district", "address", "postal_code"])
        w.writerows(customers)

    with (HERE / "warehouses.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["warehouse_id", "name", "province", "city"])
        w.writerows(WAREHOUSES)

    stock = []
    for row in products:
        sku = row[0]
        if sku.startswith("SERV"):
            continue
        scarce = rnd.random() < 0.08
        for wh in rnd.sample(WAREHOUSES, k=rnd.choice([2, 3, 4])):
            qty = rnd.randint(0, 4) if scarce else rnd.randint(200, 2000)
            if qty:
                stock.append([wh[0], sku, str(qty)])
    with (HERE / "stock.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["warehouse_id", "sku", "quantity"])
        w.writerows(stock)


if __name__ == "__main__":
    generate()
