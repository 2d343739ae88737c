"""`ocm remote`: OpenCode servers on other hosts, added by URL."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .. import UsageError
from .main import Context
from .options import complete_instances
from .output import err, instances_table, out
from .selection import json_fields_option, print_selected

pass_state = click.make_pass_decorator(Context)


@click.group()
def remote() -> None:
    """OpenCode servers on other hosts, reached by URL.

    A remote instance takes tasks, batches, sessions and the monitor like one ocm started;
    ocm runs none of its processes, so `stop`, `restart` and `rm` refuse it.

    \b
    Examples:
      ocm remote add build-1 http://10.0.0.7:4096 --password-env BUILD1_PASSWORD
      ocm remote add gpu https://oc.example.com --password-file ~/.config/oc-gpu
      ocm remote ls
      ocm remote rm build-1
    """


@remote.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--password-file",
    metavar="FILE",
    help="Read the server's password from FILE (- for standard input).",
)
@click.option("--password-env", metavar="VAR", help="Read the password from variable VAR.")
@click.option(
    "--username", default="opencode", show_default=True, help="The server's Basic-auth user."
)
@json_fields_option
@pass_state
def add(
    state: Context,
    name: str,
    url: str,
    password_file: str | None,
    password_env: str | None,
    username: str,
    as_json: str | None,
) -> None:
    """Add the OpenCode server at URL as instance NAME.

    Checks it at once (health, version, password). The password is stored 0600 in
    $OCM_HOME and never printed; it is never taken on the command line.

    \b
    Examples:
      ocm remote add build-1 http://10.0.0.7:4096 --password-env BUILD1_PASSWORD
      pass show oc/b1 | ocm remote add b1 http://10.0.0.7:4096 --password-file -
    """
    password = _password(password_file, password_env)
    info = state.manager().remote_add(name, url, username=username, password=password)
    if as_json:
        print_selected(info.to_dict(), as_json)
    else:
        out.print(instances_table([info]))


def _password(path: str | None, variable: str | None) -> str | None:
    if path is not None and variable is not None:
        raise UsageError("give --password-file or --password-env, not both")
    if variable is not None:
        value = os.environ.get(variable)
        if not value:
            raise UsageError(f"--password-env {variable}: the variable is not set or empty")
        return value.strip()
    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text()
    except OSError as exc:
        raise UsageError(f"--password-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--password-file {path}: not a text file") from None
    value = text.strip()
    if not value:
        raise UsageError(f"--password-file {path}: the file is empty")
    return value


@remote.command(name="rm")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_instances)
@json_fields_option
@pass_state
def rm(state: Context, names: tuple[str, ...], as_json: str | None) -> None:
    """Forget remote instances (their servers are left alone).

    \b
    Example:
      ocm remote rm build-1
    """
    removed = state.manager().remote_remove(list(names))
    if as_json:
        print_selected({"removed": removed}, as_json)
    else:
        for name in removed:
            out.print(f"removed {name}", markup=False)


@remote.command(name="ls")
@json_fields_option
@pass_state
def ls(state: Context, as_json: str | None) -> None:
    """List remote instances and whether they answer.

    \b
    Example:
      ocm remote ls --json
    """
    infos = [i for i in state.manager().instances(include_foreign=False) if i.owner == "remote"]
    if as_json:
        print_selected([i.to_dict() for i in infos], as_json)
    elif not infos:
        err.print("no remote instances; add one with `ocm remote add NAME URL`", markup=False)
    else:
        out.print(instances_table(infos))
