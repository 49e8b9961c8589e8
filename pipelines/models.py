"""``recsys models list|register|promote|rollback --registry DIR``: the model registry by hand
(:mod:`recsys.registry`). Serving processes that name the registry follow the champion
pointer within their poll interval. With ``--store`` (the API's event store) a promotion or
rollback is also published to the store's control log, which replicas on every host read
(:mod:`serving.champion`); promoting the current champion again publishes it to a store that
does not have it yet.

Example::

    recsys models register runs/demo/bundle --registry var/registry --promote
    recsys models list --registry var/registry
    recsys models rollback --registry var/registry --store postgresql://db/shop
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_)
        p.add_argument("--registry", required=True, help="the registry directory")
        return p

    action("list", "registered versions, the champion (*) and each gate verdict")
    p = action("register", "copy a bundle into the registry")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--promote", action="store_true", help="make it the champion too")
    publishing = [p]
    p = action("promote", "make a registered version the champion")
    p.add_argument("version")
    p.add_argument("--reason", default="promoted by hand")
    publishing.append(p)
    p = action("rollback", "serve the previous champion again")
    p.add_argument("--reason", default="rolled back by hand")
    publishing.append(p)
    for p in publishing:
        p.add_argument("--store", help="also publish the new pointer to this event store "
                       "(the API's SQLite file or postgresql:// URL), for its replicas")


def models_command(args: argparse.Namespace) -> None:
    from serving.champion import publishing_registry

    registry = publishing_registry(args.registry, getattr(args, "store", None))
    if args.action == "list":
        champion = registry.champion()
        versions = registry.versions()
        if not versions:
            print(f"registry {args.registry}: no versions")
            return
        print(f"{'':2}{'version':<28}{'registered':<27}{'gate':<6}source")
        for v in versions:
            mark = "*" if champion is not None and champion.version == v.version else ""
            print(f"{mark:<2}{v.version:<28}{v.registered_at:<27}{v.gate:<6}"
                  f"{v.record.get('source', '')}")
        if champion is not None:
            print(f"champion: {champion.version} since {champion.promoted_at} "
                  f"({champion.reason}); rollback goes to "
                  f"{champion.lineage[-2] if len(champion.lineage) > 1 else 'nothing'}")
        else:
            print("champion: none (recsys models promote VERSION)")
        return
    if args.action == "register":
        version = registry.register(args.bundle, source=args.bundle)
        print(f"registered {version} -> {registry.path_of(version)}")
        if args.promote:
            registry.promote(version, reason=f"registered from {args.bundle}")
            print(f"champion: {version}")
        return
    if args.action == "promote":
        before = registry.champion()
        champion = registry.promote(args.version, reason=args.reason)
        print(f"champion: {champion.version} (was {before.version if before else 'none'})")
        return
    before = registry.champion()
    champion = registry.rollback(reason=args.reason)
    print(f"champion: {champion.version} (rolled back from "
          f"{before.version if before else 'none'})")
