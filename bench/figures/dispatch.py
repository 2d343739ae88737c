"""1. Task dispatch: one prompt end to end, against the line's own `opencode run` client
(`--attach URL` on 1.x, `--server URL` on 2.x) and raw curl."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from opencode_manager.lines import Line

from ..env import ROOT
from ..measure import BenchError, Series, check, run_command
from ..plan import Plan, SharedFleet
from ..report import Figure, timed_ratio_goal

PROMPT = "BASH: echo bench"  # a tool step, then a text step
OVER_FLOOR_S = 0.25  # what `ocm run` may add to the curl floor: interpreter, imports, events

# The floor: what a script with nothing but curl does (bash's regex, no extra process). The
# password goes to curl as a config on its stdin (`-K -`), never on its command line, where
# every user of the machine can read it (`ps`, /proc/PID/cmdline).
FLOOR_SCRIPT = r"""set -eu
auth="user = \"$OPENCODE_SERVER_USERNAME:$OPENCODE_SERVER_PASSWORD\""
session=$(curl -sf -K - -H 'content-type: application/json' -d '{}' \
  "$OPENCODE_SERVER_URL/session" <<<"$auth")
[[ $session =~ \"id\":\"(ses_[^\"]*)\" ]]
curl -sf -K - -H 'content-type: application/json' \
  -d '{"parts":[{"type":"text","text":"BASH: echo bench"}]}' \
  "$OPENCODE_SERVER_URL/session/${BASH_REMATCH[1]}/message" <<<"$auth"
"""
# The same on 2.x: its prompt route admits the input and returns at once, so the script then
# blocks on the wait route (asked again should it answer before the turn began) and reads the
# projected messages until they end the turn with an idle entry.
FLOOR_SCRIPT_V2 = r"""set -eu
auth="user = \"$OPENCODE_SERVER_USERNAME:$OPENCODE_SERVER_PASSWORD\""
session=$(curl -sf -K - -H 'content-type: application/json' -d '{}' \
  "$OPENCODE_SERVER_URL/api/session" <<<"$auth")
[[ $session =~ \"id\":\"(ses_[^\"]*)\" ]]
id=${BASH_REMATCH[1]}
curl -sf -K - -H 'content-type: application/json' -d '{"text":"BASH: echo bench"}' \
  "$OPENCODE_SERVER_URL/api/session/$id/prompt" <<<"$auth" >/dev/null
for _ in $(seq 600); do
  curl -sf -K - -X POST "$OPENCODE_SERVER_URL/api/experimental/session/$id/wait" <<<"$auth"
  messages=$(curl -sf -K - "$OPENCODE_SERVER_URL/api/session/$id/message?order=asc" <<<"$auth")
  [[ $messages == *'"type":"idle"'* ]] && break
done
printf '%s\n' "$messages"
"""
#: Per line: the client's name in the report, its argv after the binary, the floor's routes,
#: and what the floor's answer holds once the turn is over.
CLIENT = {Line.V1: "opencode run --attach", Line.V2: "opencode run --server"}
FLOOR = {
    Line.V1: (
        FLOOR_SCRIPT,
        "curl POST /session, then curl POST /session/ID/message (sync",
        '"role":"assistant"',
    ),
    Line.V2: (
        FLOOR_SCRIPT_V2,
        "curl POST /api/session, POST /api/session/ID/prompt, then POST "
        "/api/experimental/session/ID/wait and GET /api/session/ID/message until idle (no "
        "event stream",
        '"type":"assistant"',
    ),
}


def run(fleet: SharedFleet, plan: Plan) -> Figure:
    env = fleet.env
    target = fleet.instances[0]
    client = CLIENT[env.line]
    script, floor_says, floor_expect = FLOOR[env.line]
    figure = Figure(
        1,
        "Task dispatch: one prompt end to end",
        commands=[
            f'ocm run "{PROMPT}"',
            f"{client} {target.url} --format json {PROMPT}"
            "   # OPENCODE_SERVER_PASSWORD in its environment",
            f"bash floor.sh   # {floor_says}, basic auth from a config on stdin: `curl -K -`)",
            f'python -m bench.library_probe --runs {plan.runs} "{PROMPT}"'
            "   # Manager().run() / await AsyncManager().run(), timed in-process",
        ],
    )
    ocm_argv = [env.ocm, "run", PROMPT]
    attach_argv = [env.opencode, *client.split()[1:], target.url, "--format", "json",
                   *PROMPT.split()]  # fmt: skip
    floor_argv = ["bash", "-c", script]
    attach_env = fleet.attach_env(target)
    floor_env = {
        **env.env,
        "OPENCODE_SERVER_URL": target.url,
        "OPENCODE_SERVER_USERNAME": target.username,
        "OPENCODE_SERVER_PASSWORD": target.password,
    }

    def ocm_run() -> None:
        result = check(
            run_command(ocm_argv, env=env.env, cwd=env.project), "ocm run", expect="bench"
        )
        ocm_wall.add(result.wall_s)
        ocm_rss.add((result.max_rss_kb or 0) / 1024)

    def attach_run() -> None:
        result = check(run_command(attach_argv, env=attach_env, cwd=env.project), client)
        attach_wall.add(result.wall_s)
        attach_rss.add((result.max_rss_kb or 0) / 1024)
        attach_tools.append('"type":"tool_use"' in result.stdout)
        attach_texts.append('"type":"text"' in result.stdout)

    def floor_run() -> None:
        result = check(
            run_command(floor_argv, env=floor_env, cwd=env.project),
            "curl floor",
            expect=floor_expect,
        )
        floor_wall.add(result.wall_s)
        floor_rss.add((result.max_rss_kb or 0) / 1024)

    ocm_wall, attach_wall, floor_wall = Series(), Series(), Series()
    ocm_rss, attach_rss, floor_rss = Series(), Series(), Series()
    attach_tools: list[bool] = []
    attach_texts: list[bool] = []
    # Warm-up: the first prompt per instance and directory costs OpenCode ~2 s more.
    for instance in fleet.instances:
        env.ocm_run("run", "-i", instance.name, PROMPT)
    for measure in (ocm_run, attach_run, floor_run):
        measure()
    for series in (ocm_wall, attach_wall, floor_wall, ocm_rss, attach_rss, floor_rss):
        series.values.clear()
    attach_tools.clear()
    attach_texts.clear()
    for _ in range(plan.runs):  # interleaved, so drift on a shared machine hits all alike
        ocm_run()
        attach_run()
        floor_run()

    library = _library(fleet, plan)

    figure.add("ocm", "`ocm run` wall", "s", ocm_wall, baseline="attach")
    figure.add("attach", f"`{client}` wall", "s", attach_wall)
    figure.add("floor", "curl floor wall", "s", floor_wall)
    figure.add("ocm_floor", "`ocm run` wall vs floor", "s", ocm_wall, baseline="floor")
    figure.add("lib", "library `Manager().run()`", "s", Series(library["run_s"]), baseline="floor")
    figure.add(
        "alib",
        "library `await AsyncManager().run()`",
        "s",
        Series(library["arun_s"]),
        baseline="floor",
    )
    figure.add(
        "lib_first",
        "library, first call in the process",
        "s",
        Series([library["first_call_s"]]),
        baseline="floor",
        note="includes lazy imports",
    )
    figure.add("ocm_rss", "`ocm run` peak RSS", "MB", ocm_rss, baseline="attach_rss")
    figure.add("attach_rss", f"`{client}` peak RSS", "MB", attach_rss)
    figure.add("floor_rss", "curl floor peak RSS", "MB", floor_rss)
    seconds = "{:.3f} s".format
    megabytes = "{:.1f} MB".format
    line_client = "the line's `opencode run`"
    timed_ratio_goal(figure, "ocm", "attach", 0.2, "`ocm run` wall", seconds,
                     versus=f"{line_client} wall")  # fmt: skip
    timed_ratio_goal(figure, "ocm_rss", "attach_rss", 0.15, "`ocm run` peak RSS", megabytes,
                     versus=f"{line_client} peak RSS")  # fmt: skip
    timed_ratio_goal(figure, "lib", "floor", 1.1, "library `Manager().run()` wall", seconds)
    over = ocm_wall.median - floor_wall.median
    figure.goal(
        f"`ocm run` wall <= curl floor + {OVER_FLOOR_S:g} s",
        f"+{over:.3f} s ({ocm_wall.median:.3f} s vs {floor_wall.median:.3f} s)",
        over <= OVER_FLOOR_S,
    )
    figure.notes += [
        "Wall: measured around the whole command (process start to exit). Peak RSS: GNU time "
        "`%M`, the largest resident set of the command or any child it waited for.",
        f"All three commands send `{PROMPT}` (one bash tool step, then a text step) to "
        f"{target.name}; `ocm run` picks the least busy of the "
        f"{len(fleet.instances)} idle instances itself.",
        "One warm-up prompt per instance and per command first; then the three commands "
        "interleaved, run after run.",
        "The library rows are timed inside one Python process after an untimed first call "
        "(shown separately); interpreter start and imports are excluded.",
        f"`{client} --format json` exited 0 in every run; its output had the "
        f"tool step's event in {sum(attach_tools)} and the final text event in "
        f"{sum(attach_texts)} of {len(attach_texts)} measured runs (it may exit before "
        "printing the whole turn; the server finishes the turn either way).",
    ]
    return figure


def _library(fleet: SharedFleet, plan: Plan) -> dict[str, Any]:
    env = fleet.env
    result = subprocess.run(
        [env.python, "-m", "bench.library_probe", "--runs", str(plan.runs), PROMPT],
        env={**env.env, "PYTHONPATH": str(ROOT)},
        cwd=str(env.project),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"library probe exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-400:]}"
        )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data
