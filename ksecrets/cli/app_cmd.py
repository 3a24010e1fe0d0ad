"""`ksecrets app add --stack S --name N [--namespace NS] [--image IMG --port P] [--keys K,..] [--env VAR=KEY]`."""

from __future__ import annotations

import argparse

from ksecrets.cli.flags import add_root_flag, add_stack_flag


def register(subparsers) -> None:
    from ksecrets.cli import SUBCOMMANDS

    p = subparsers.add_parser("app", help=SUBCOMMANDS["app"][1], description=__doc__)
    asub = p.add_subparsers(dest="app_command", required=True, parser_class=type(p))
    a = asub.add_parser("add", help="add an app (ServiceAccount, Secret, optional Deployment) to a stack")
    add_stack_flag(a)
    a.add_argument("--name", required=True, help="the app's name")
    a.add_argument("--namespace", help="its namespace (default: the name)")
    a.add_argument("--secret-name", help="its Secret (default <name>-secrets)")
    a.add_argument("--service-account", help="its ServiceAccount (default: the name)")
    a.add_argument("--keys", help="the Secret's keys, comma separated (vault and manual backends)")
    a.add_argument("--image", help="a Deployment of this image (pinned tag), reading the Secret with envFrom")
    a.add_argument("--port", type=int, help="--image: the container port")
    a.add_argument("--replicas", type=int, default=None, help="--image: replicas")
    a.add_argument("--env", action="append", default=[], metavar="VAR=KEY", help="--image: VAR from key KEY")
    a.add_argument("--vault-path", help="vault backend: the kv path (default: the name)")
    add_root_flag(a)
    a.set_defaults(func=run_add)


def run_add(args: argparse.Namespace) -> int:
    from ksecrets.backends.vault import raw_vault_entry
    from ksecrets.config import load_stack
    from ksecrets.config.model import raw_secret_name
    from ksecrets.errors import KsecretsError
    from ksecrets.usecases.app_add import app_add

    cfg = load_stack(args.stack, args.root)
    app: dict = {"name": args.name, "namespace": args.namespace or args.name}
    if args.service_account:
        app["serviceAccount"] = args.service_account
    if args.secret_name:
        app["secretName"] = args.secret_name
    if args.keys:
        app["keys"] = [k.strip() for k in args.keys.split(",") if k.strip()]
    if args.image:
        dep: dict = {"name": args.name, "image": args.image}
        if args.replicas is not None:
            dep["replicas"] = args.replicas
        if args.port is not None:
            dep["port"] = args.port
        dep["envFrom"] = True
        env = {}
        for item in args.env:
            var, sep, key = item.partition("=")
            if not sep or not var or not key:
                raise KsecretsError(f"--env {item!r}: expected VAR=KEY")
            env[var] = key
        if env:
            dep["env"] = env
        app["deployments"] = [dep]
    elif args.env or args.port or args.replicas is not None:
        raise KsecretsError("--env, --port and --replicas need --image")
    if cfg.spec.vault:
        app["vault"] = raw_vault_entry(app, args.vault_path)
    elif args.vault_path:
        raise KsecretsError(f"{cfg.source}: --vault-path: backend is {cfg.backend}, not vault")
    changed = app_add(args.root, args.stack, app)
    secret = raw_secret_name(app)
    print(f"{changed}: app {app['namespace']}/{args.name} added")
    for step in cfg.spec.app_add_steps(args.stack, secret, app):
        print(f"next: {step}")
    print(f"next: ksecrets doctor --stack {args.stack}; make render")
    return 0
