"""Deterministic CSV data sets for the task benchmark (seeded numpy; about 1 MB in all).

    python -m tests.benchmarks.tasks.datasets OUT_DIR

Every float is rounded before it is written and the expected answers are computed from
the files as written (see ``suite.py``), so what the agent reads is what is scored.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240601
YEAR = 2023

REGIONS = ["North", "South", "East", "West"]
PRODUCTS = [
    "Widget",
    "Gadget",
    "Doohickey",
    "Gizmo",
    "Sprocket",
    "Thingamajig",
    "Whatsit",
    "Contraption",
]
BASE_PRICES = [19.99, 34.50, 7.25, 52.00, 12.75, 88.90, 4.99, 149.00]
CITIES = [
    "Springfield",
    "Riverton",
    "Lakeside",
    "Hillcrest",
    "Fairview",
    "Oakdale",
    "Maplewood",
    "Brookfield",
]
SEGMENTS = ["Consumer", "Corporate", "Small Business"]
DEPARTMENTS = ["Engineering", "Sales", "Marketing", "Finance", "Support", "Operations"]
FIRST = [
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Yara",
    "Zane",
]
LAST = [
    "Anders",
    "Baker",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Rossi",
    "Silva",
    "Tanaka",
    "Weber",
]

FILES = (
    "sales.csv",
    "customers.csv",
    "orders.csv",
    "sensors.csv",
    "employees.csv",
    "marketing.csv",
)


def _names(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct 'First Last' names in a seeded order."""
    pairs = [f"{first} {last}" for first in FIRST for last in LAST]
    order = rng.permutation(len(pairs))[:count]
    return [pairs[i] for i in order]


def sales(rng: np.random.Generator) -> pd.DataFrame:
    n = 2400
    days = pd.date_range(f"{YEAR}-01-01", f"{YEAR}-12-31", freq="D")
    # more sales late in the year and on some weekdays, so months and weekdays differ clearly
    weights = 1.0 + 0.6 * (days.month.to_numpy() / 12) + 0.8 * (days.day_of_week.to_numpy() == 4)
    date = np.sort(rng.choice(days.values, size=n, p=weights / weights.sum()))
    region = rng.choice(REGIONS, size=n, p=[0.22, 0.24, 0.25, 0.29])
    product_index = rng.choice(
        len(PRODUCTS), size=n, p=[0.2, 0.16, 0.14, 0.12, 0.12, 0.1, 0.09, 0.07]
    )
    units = rng.integers(1, 21, size=n)
    price = np.round(np.array(BASE_PRICES)[product_index] * rng.uniform(0.9, 1.1, size=n), 2)
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(date).strftime("%Y-%m-%d"),
            "region": region,
            "product": np.array(PRODUCTS)[product_index],
            "units": units,
            "unit_price": price,
        }
    )
    frame["revenue"] = np.round(frame["units"] * frame["unit_price"], 2)
    frame.insert(0, "sale_id", np.arange(1, n + 1))
    return frame


def customers(rng: np.random.Generator) -> pd.DataFrame:
    n = 320
    signup = pd.Timestamp("2019-01-01") + pd.to_timedelta(
        rng.integers(0, 4 * 365, size=n), unit="D"
    )
    return pd.DataFrame(
        {
            "customer_id": np.arange(1001, 1001 + n),
            "name": _names(rng, n),
            "city": rng.choice(CITIES, size=n),
            "segment": rng.choice(SEGMENTS, size=n, p=[0.55, 0.28, 0.17]),
            "signup_date": signup.strftime("%Y-%m-%d"),
            "age": rng.integers(18, 71, size=n),
        }
    )


def orders(rng: np.random.Generator, customers_: pd.DataFrame) -> pd.DataFrame:
    n = 1500
    customer_ids = customers_["customer_id"].to_numpy()
    # about 40 customers never order
    active = rng.choice(customer_ids, size=len(customer_ids) - 40, replace=False)
    when = pd.Timestamp(f"{YEAR}-01-01") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    customer = rng.choice(np.sort(active), size=n)
    # Small Business customers return more often
    segment = customers_.set_index("customer_id").loc[customer, "segment"].to_numpy()
    returned = np.where(segment == "Small Business", 0.15, 0.07)
    draw = rng.random(n)
    status = np.where(
        draw < returned, "returned", np.where(draw < returned + 0.12, "cancelled", "completed")
    )
    frame = pd.DataFrame(
        {
            "order_id": np.arange(50001, 50001 + n),
            "customer_id": customer,
            "order_date": when.strftime("%Y-%m-%d"),
            "amount": np.round(rng.gamma(2.2, 60.0, size=n) + 5, 2),
            "status": status,
        }
    )
    return frame.sort_values(["order_date", "order_id"]).reset_index(drop=True)


def sensors(rng: np.random.Generator) -> pd.DataFrame:
    hours = pd.date_range(f"{YEAR}-03-01", periods=24 * 60, freq="h")
    parts = []
    for k, sensor in enumerate(["S1", "S2", "S3"]):
        t = np.arange(len(hours))
        temperature = (
            18
            + 3 * k
            + 0.04 * t / 24
            + 4 * np.sin(2 * np.pi * (t % 24 - 9) / 24)
            + rng.normal(0, 1.2, len(t))
        )
        humidity = 55 - 1.5 * (temperature - 20) + rng.normal(0, 4, len(t))
        frame = pd.DataFrame(
            {
                "timestamp": hours.strftime("%Y-%m-%d %H:%M:%S"),
                "sensor_id": sensor,
                "temperature": np.round(temperature, 2),
                "humidity": np.round(humidity, 1),
            }
        )
        missing_rate = [0.02, 0.09, 0.05][k]
        frame.loc[rng.random(len(t)) < missing_rate, "temperature"] = np.nan
        frame.loc[rng.random(len(t)) < 0.04, "humidity"] = np.nan
        parts.append(frame)
    return pd.concat(parts).sort_values(["timestamp", "sensor_id"]).reset_index(drop=True)


def employees(rng: np.random.Generator) -> pd.DataFrame:
    n = 240
    department = rng.choice(DEPARTMENTS, size=n, p=[0.28, 0.2, 0.14, 0.12, 0.16, 0.1])
    experience = rng.integers(0, 31, size=n)
    bonus = {
        "Engineering": 14000,
        "Sales": 4000,
        "Marketing": 6000,
        "Finance": 9000,
        "Support": -6000,
        "Operations": 0,
    }
    salary = (
        42000
        + 2150 * experience
        + np.array([bonus[d] for d in department])
        + rng.normal(0, 6500, size=n)
    )
    hire = pd.Timestamp("2024-06-30") - pd.to_timedelta(
        np.minimum(experience * 365 * rng.uniform(0.2, 1.0, size=n), 12 * 365).astype(int)
        + rng.integers(0, 200, size=n),
        unit="D",
    )
    score = np.clip(np.round(rng.normal(3.6, 0.6, size=n), 1), 1.0, 5.0)
    score[department == "Support"] = np.clip(score[department == "Support"] - 0.4, 1.0, 5.0)
    return pd.DataFrame(
        {
            "employee_id": np.arange(1, n + 1),
            "name": _names(rng, n),
            "department": department,
            "hire_date": hire.strftime("%Y-%m-%d"),
            "years_experience": experience,
            "salary": np.round(salary, -1).astype(int),
            "performance_score": score,
        }
    )


def marketing(rng: np.random.Generator) -> pd.DataFrame:
    weeks = pd.date_range(f"{YEAR}-01-02", periods=52, freq="7D")
    tv = np.round(rng.uniform(1000, 9000, size=52), 2)
    online = np.round(rng.uniform(500, 6000, size=52), 2)
    radio = np.round(rng.uniform(200, 2500, size=52), 2)
    sales_ = np.round(
        12000 + 2.1 * tv + 0.9 * online + 0.2 * radio + rng.normal(0, 2500, size=52), 2
    )
    return pd.DataFrame(
        {
            "week_start": weeks.strftime("%Y-%m-%d"),
            "tv_spend": tv,
            "online_spend": online,
            "radio_spend": radio,
            "sales": sales_,
        }
    )


def generate(out_dir: str | Path) -> dict[str, Path]:
    """Write every data set into ``out_dir`` (same bytes on every call); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    frames = {"sales.csv": sales(rng)}
    frames["customers.csv"] = customers(rng)
    frames["orders.csv"] = orders(rng, frames["customers.csv"])
    frames["sensors.csv"] = sensors(rng)
    frames["employees.csv"] = employees(rng)
    frames["marketing.csv"] = marketing(rng)
    paths = {}
    for name, frame in frames.items():
        path = out / name
        frame.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")
        paths[name] = path
    return paths


if __name__ == "__main__":
    for path in generate(sys.argv[1] if len(sys.argv) > 1 else "task-data").values():
        print(f"{path}  {path.stat().st_size} bytes")
