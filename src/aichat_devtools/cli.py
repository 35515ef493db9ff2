"""Command line of the development tools: `aichat-dev run | token`.

`run` is what `make run` starts (the service, a fake model when no key is set, Envoy);
`token` prints a development JWT that the repository's envoy.yaml accepts. The benchmark
is `python -m aichat_devtools.bench` (`make bench`).
"""

from __future__ import annotations

import argparse


def _cmd_run(args: argparse.Namespace) -> int:
    from aichat_devtools.dev_run import run

    return run()


def _cmd_token(args: argparse.Namespace) -> int:
    from aichat_devtools.dev_token import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    from aichat_devtools.dev_token import add_arguments

    parser = argparse.ArgumentParser(prog="aichat-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", aliases=["dev-run"], help="the local demo: server (+ fake model, Envoy)"
    )
    run.set_defaults(func=_cmd_run)
    token = sub.add_parser(
        "token", aliases=["dev-token"], help="print a development JWT for Envoy (keys in ./var)"
    )
    add_arguments(token)
    token.set_defaults(func=_cmd_token)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
