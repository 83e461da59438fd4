"""`python app.py`: the flood command pipeline on the sample data.

Starts a real Redis (embedded unless REDIS_URL is set), replays the default scenario through the
feeds, the rule engine and the recommendations, prints progress and the alerts, and writes the
after-action report. (The map dashboard joins here next.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from command.config import Settings
from command.pipeline import Progress, run_replay
from command.redis_server import RedisStartError, redis_for
from command.scenario import ScenarioError


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", type=Path, default=settings.default_scenario)
    p.add_argument("--speed", default="max", help="replay speed: 1, 10, 60 ... or max")
    p.add_argument("--out", type=Path, default=None, help="report folder (default var/reports/<namespace>)")
    args = p.parse_args(argv)
    from feeds.replay import parse_speed

    try:
        speed = parse_speed(args.speed)
        with redis_for(settings) as r:
            print(f"Redis: {r.connection_pool.connection_kwargs.get('host')}:"
                  f"{r.connection_pool.connection_kwargs.get('port')} "
                  f"({'REDIS_URL' if settings.redis_url else 'embedded, data in ' + str(settings.redis_dir)})")
            print(f"Replaying {args.scenario} at {'max speed' if speed is None else f'{speed:g}x'} ...")
            res = run_replay(r, args.scenario, speed=speed, shards=settings.shards, progress=Progress(sys.stdout))
            out = args.out or settings.data_dir / "reports" / res.namespace
            from command.keys import Keys
            from command.report import write_outputs

            report = write_outputs(r, Keys(res.namespace), out)
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RedisStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    tz = report["timezone"]
    print(f"\n{res.readings} readings in {res.seconds:.1f} s -> {report['totals']['alerts']} alerts, "
          f"{report['totals']['recommendations']} recommendations, {report['totals']['quarantined']} rows quarantined")
    print("alerts by level:", ", ".join(f"{k} {v}" for k, v in report["alerts_by_level"].items()))
    for a in report["alerts"][:60]:
        end = a["resolved_at"][11:16] if a["resolved_at"] else "open"
        print(f"  {a['level']:<7} {a['rule']:<22} {a['subject']:<8} {a['opened_at'][:16]} -> {end}")
    print(f"\nreport: {out / 'after_action.html'}  (namespace {res.namespace}, times in {tz})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
