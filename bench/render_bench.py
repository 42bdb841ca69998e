"""CPU cost of rendering one campaign message (bindings + Meta components + display body).

The send pipeline's budget is 1,500 messages/s on 2 cores for everything (about 1.3 CPU-ms per
message across all processes), so rendering must stay far below 0.1 ms per message. This
measures the per-message work of ``rendering.CampaignRendering.render`` on contexts shaped as
``bindings.contexts_for`` returns them; the batch's queries (a fixed 3-4 per batch, see
tests/campaigns/test_rendering.py) are not included. No database is needed.

    .venv/bin/python bench/render_bench.py [--messages 20000]

Prints microseconds per message (best of 5 rounds) per binding set, and the time one batch of
500 spends compiling its bindings and templates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "plain paths (3 x {{ tags.x }} / {{ values.x }})": {
        "body": {"1": "{{ tags.first_name }}", "2": "{{ values.order_id }}"},
        "button:0": {"1": "{{ values.order_id }}"},
    },
    "filters (default, upcase, date)": {
        "body": {"1": '{{ tags.first_name | default: "Kunde" }}', "2": "{{ tags.city | upcase }}"},
        "button:0": {"1": "{{ values.order_id | downcase }}"},
    },
    "logic (if / for)": {
        "body": {
            "1": "{% if tags.vip %}Gold{% else %}{{ tags.first_name }}{% endif %}",
            "2": "{% for h in tags.hobbies %}{{ h }}{% unless forloop.last %}, {% endunless %}{% endfor %}",
        },
        "button:0": {"1": "{{ values.order_id }}"},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
    import django

    django.setup()
    from campaigns.bindings import TagValues
    from campaigns.models import Campaign
    from campaigns.rendering import CampaignRendering, Rendered

    template = {
        "id": 1,
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "parameter_format": "POSITIONAL",
        "components": [
            {"type": "BODY", "text": "Hi {{1}}, your order from {{2}} is on its way."},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Track", "url": "https://x.test/o/{{1}}"}],
            },
        ],
    }
    contexts = [
        {
            "subscriber": {"name": f"Person {n}", "language": "en", "phone": f"+49151{n:08d}"},
            "tags": TagValues(
                first_name=f"Anna{n}",
                city="berlin",
                vip=n % 7 == 0,
                hobbies=["chess", "tango"],
                language="en",
            ),
            "values": {"order_id": f"SKB-{n}"},
            "event": {},
        }
        for n in range(1_000)
    ]
    print(f"{'bindings':52} {'µs/message':>11} {'setup/batch ms':>15}")
    for label, bindings in CASES.items():
        campaign = Campaign(
            template_name="order_update",
            languages=["en_US"],
            fallback_language="en_US",
            bindings=bindings,
            templates_snapshot={"en_US": template},
        )
        started = time.perf_counter()
        rendering = CampaignRendering(campaign)
        assert isinstance(rendering.render(contexts[0]), Rendered)
        setup_ms = (time.perf_counter() - started) * 1000
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for n in range(args.messages):
                rendering.render(contexts[n % len(contexts)])
            best = min(best, (time.process_time() - started) / args.messages)
        print(f"{label:52} {best * 1e6:11.1f} {setup_ms:15.2f}")


if __name__ == "__main__":
    main()
