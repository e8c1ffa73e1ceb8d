"""Writes the bundled churn table (churn_train.csv.gz, churn_test.csv.gz): synthetic, seeded, small.

    python -m mlcli.datasets.make_churn

A telecom-style customer table with every kind of column mlcli's typed features handle: an id (to
exclude), categories (one with gaps), numbers (one with gaps), a true/false column, a signup date and
a short free-text review. Whether a customer churned depends on several of them at once — the plan,
tenure, support calls, auto-pay, the review's tone, the charges and a December-promotion signup
month — plus noise, so a model has to combine the columns to beat the majority class.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from pathlib import Path

import numpy as np

SEED = 20240601
ROWS = 2400
TEST_ROWS = 480
OUT = Path(__file__).resolve().parent

PLANS = (("basic", 0.5), ("standard", 0.35), ("premium", 0.15))
REGIONS = ("north", "south", "east", "west", "central")
NEGATIVE = ("slow internet again", "billing error on my invoice", "support never called back",
            "outage for hours last week", "price went up without notice", "cannot get through to anyone")
POSITIVE = ("great service", "fast and reliable connection", "happy with the price", "support fixed it quickly",
            "no problems at all this year")
NEUTRAL = ("moved house recently", "using it mostly for streaming", "second line for the kids", "works fine")


def rows(rng: np.random.Generator) -> list[dict]:
    out = []
    end = dt.date(2024, 7, 1)
    for i in range(ROWS):
        plan = rng.choice([p for p, _ in PLANS], p=[w for _, w in PLANS])
        region = rng.choice(REGIONS)
        tenure = int(rng.integers(1, 73))
        signup = end - dt.timedelta(days=int(tenure * 30.4 + rng.integers(0, 30)))
        base = {"basic": 45.0, "standard": 70.0, "premium": 95.0}[plan]
        charges = round(base + rng.normal(0, 8), 2)
        calls = int(rng.poisson(1.5))
        auto_pay = bool(rng.random() < 0.55)
        tone = rng.choice(["negative", "positive", "neutral"], p=[0.3, 0.35, 0.35])
        phrases = {"negative": NEGATIVE, "positive": POSITIVE, "neutral": NEUTRAL}[tone]
        said = [str(p) for p in rng.choice(phrases, size=int(rng.integers(1, 3)), replace=False)]
        if tone != "neutral" and rng.random() < 0.4:
            said.append(str(rng.choice(NEUTRAL)))
        review = ", ".join(said)
        logit = 2.5 * (-0.6 + 0.9 * (plan == "basic") - 0.7 * (plan == "premium") - 0.035 * tenure + 0.45 * calls
                       - 0.8 * auto_pay + 1.7 * (tone == "negative") - 1.0 * (tone == "positive")
                       + 0.03 * (charges - base) + 0.9 * (signup.month == 12) + 0.3 * (region == "south")
                       + rng.normal(0, 0.3))
        churned = rng.random() < 1 / (1 + np.exp(-logit))
        out.append({
            "customer_id": f"C{i + 1:05d}",
            "plan": plan,
            "region": "" if rng.random() < 0.05 else region,
            "tenure_months": tenure,
            "monthly_charges": "" if rng.random() < 0.08 else f"{charges:.2f}",
            "support_calls": calls,
            "auto_pay": "true" if auto_pay else "false",
            "signup_date": signup.isoformat(),
            "last_review": "" if rng.random() < 0.1 else review,
            "churned": "yes" if churned else "no",
        })
    return out


def write(path: Path, table: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    # mtime=0: rerunning the script changes no byte.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text.getvalue().encode("utf-8"))


def main() -> None:
    table = rows(np.random.default_rng(SEED))
    write(OUT / "churn_train.csv.gz", table[:-TEST_ROWS])
    write(OUT / "churn_test.csv.gz", table[-TEST_ROWS:])
    churn = sum(r["churned"] == "yes" for r in table) / len(table)
    print(f"wrote {len(table) - TEST_ROWS} training and {TEST_ROWS} test rows; churn rate {churn:.1%}")


if __name__ == "__main__":
    main()
