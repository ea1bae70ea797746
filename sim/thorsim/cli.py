"""`sim/fleet`: build the simulator's images and bring simulated Thor units up and down."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import docker
import docker.errors

from . import cache, images
from . import fleet as fleet_mod

NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def unit_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of units") from None
    if not 1 <= count <= fleet_mod.MAX_UNITS:
        raise argparse.ArgumentTypeError(f"{count} units: a fleet has 1 to {fleet_mod.MAX_UNITS}")
    return count


def name(text: str) -> str:
    if not NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use lower-case letters, digits and '-', starting with a letter")
    return text


def on_demand_image(text: str) -> images.Image:
    # A type rather than choices: argparse rejects an empty list against choices (nargs="*").
    for image in images.ON_DEMAND:
        if image.name == text:
            return image
    known = ", ".join(image.name for image in images.ON_DEMAND)
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {known})")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fleet", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build the simulator images (skipped while their inputs are unchanged)")
    build.add_argument("--force", action="store_true", help="rebuild even if the images are current")
    build.add_argument(
        "extra",
        nargs="*",
        type=on_demand_image,
        metavar="IMAGE",
        help="also build these optional images: " + ", ".join(image.name for image in images.ON_DEMAND),
    )

    up = sub.add_parser("up", help="bring up N units, thor-01 .. thor-N, and write their inventory")
    up.add_argument("count", type=unit_count, metavar="N", help=f"number of units, 1 to {fleet_mod.MAX_UNITS}")
    _fleet_args(up)
    up.add_argument("--prefix", type=name, default="thor", help="container name prefix (default: thor)")
    up.add_argument(
        "--inventory", type=Path, help="where to write the inventory (default: inventories/FLEET/hosts.yml)"
    )
    up.add_argument("--ephemeral", action="store_true", help="mark as a test fleet that `prune` may remove")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for each unit (default: 180)")
    up.add_argument(
        "--connection",
        choices=fleet_mod.CONNECTIONS,
        default="ssh",
        help="how the inventory reaches the units: ssh as thor with sudo, as on a real fleet (default), "
        "or docker exec as root",
    )
    up.add_argument(
        "--authorize",
        type=Path,
        action="append",
        default=[],
        metavar="PUBKEY",
        help="also let this public key file log in as thor (another operator's key); repeatable",
    )

    down = sub.add_parser("down", help="remove a fleet's units, volumes, network and inventory")
    _fleet_args(down)

    sub.add_parser("status", help="every simulated unit with its systemd, engine and default runtime")
    sub.add_parser("images", help="the simulator images and whether they are current")
    sub.add_parser("prune", help="remove every ephemeral (test) fleet")
    source = sub.add_parser("cache", help="write a cache source with every profile's model (jetson-containers layout)")
    _fleet_args(source)
    source.add_argument("--root", type=Path, help="where (default: the fleet's, sim/.cache/sources/FLEET)")
    source.add_argument(
        "--weights-mb", type=int, default=0, help="add this many MB of sharded weights and a compile cache (default: 0)"
    )
    return top


def _fleet_args(command: argparse.ArgumentParser) -> None:
    command.add_argument("--fleet", type=name, default="sim", help="fleet name (default: sim)")


def table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def remove(client: docker.DockerClient, fleet_name: str) -> None:
    removed = fleet_mod.down(client, fleet_name)
    inventory = fleet_mod.Fleet(fleet_name).default_inventory
    if fleet_mod.inventory_is_ours(inventory):
        inventory.unlink(missing_ok=True)
    print(f"fleet {fleet_name}: removed " + ", ".join(f"{n} {kind}" for kind, n in removed.items()))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "cache":
        print(cache.make_source(args.root or cache.source_root(args.fleet), args.weights_mb))
        return 0
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"fleet: no Docker engine answers ({exc}); run `make setup` to install and start one.", file=sys.stderr)
        return 1
    if args.command == "build":
        for image, result in images.build(client, force=args.force, extra=tuple(args.extra)).items():
            print(f"{image}: {result}")
    elif args.command == "images":
        print(table(images.describe(client)))
    elif args.command == "up":
        fleet = fleet_mod.Fleet(args.fleet, args.prefix, args.ephemeral)
        inventory = args.inventory or fleet.default_inventory
        if not fleet_mod.inventory_is_ours(inventory):
            print(
                f"fleet: {inventory} was not written by sim/fleet: give another --fleet or --inventory.",
                file=sys.stderr,
            )
            return 1
        started = time.monotonic()
        extra_keys = tuple(path.read_text(encoding="utf-8").strip() for path in args.authorize)
        names = fleet_mod.up(client, fleet, args.count, inventory, args.timeout, args.connection, extra_keys)
        print(
            f"fleet {fleet.name}: {len(names)} units up in {time.monotonic() - started:.1f}s on network {fleet.network}"
        )
        print(f"inventory: {inventory}")
    elif args.command == "down":
        remove(client, args.fleet)
    elif args.command == "status":
        print(table(fleet_mod.status(client)))
    elif args.command == "prune":
        for stale in fleet_mod.fleets(client, ephemeral_only=True):
            remove(client, stale)
    return 0
