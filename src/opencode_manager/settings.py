"""Settings, resolved once with visible precedence: explicit arguments > environment > defaults.

Nothing else in the package reads ``os.environ``; everything that needs the environment (the
child environment of a server, the user's home) gets it from here. ``OCM_HOME`` relocates all
state, which is how tests isolate themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StateError

APP_NAME = "opencode-manager"
#: The OpenCode version `ocm install` installs by default, and whose line the managed installs
#: offer first to an instance that chooses no binary: the current line, 2.x (issue 25; every
#: compatibility step passes on it). To stay on 1.x: `ocm install --version 1.18.33`, then
#: `OCM_OPENCODE=1.18.33` (or `--opencode 1.18.33`, a fleet file's `opencode` key). Each
#: line's tested version (CI runs both) is in lines.py, with the oldest supported one.
PINNED_OPENCODE_VERSION = "2.1.2"  # lines.PINNED_VERSIONS[Line.V2] (a test keeps them equal)
#: How long a control call waits for a server's answer by default (`OCM_HTTP_TIMEOUT`).
#: An idle server answers in milliseconds; a loaded machine, a GC pause or a cold host
#: booting a project directory took more than 10 s (issue 23), so the default leaves room.
HTTP_TIMEOUT = 30.0
#: How long `opencode --version` gets at first (`OCM_VERSION_TIMEOUT`): the binary is 200 MB
#: and a loaded machine takes seconds to load it; a run that gets no answer is tried again.
VERSION_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    """Where state lives and which binary to run."""

    home: Path
    opencode: str | None = None  # explicit binary: --opencode or OCM_OPENCODE
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    registry_timeout: float = 15.0  # how long a command waits for the registry's lock
    warmup_timeout: float = 30.0  # a keeper's warm-up budget before `running`; 0: none
    http_timeout: float = HTTP_TIMEOUT  # a control call's wait for an answer (OCM_HTTP_TIMEOUT)
    version_timeout: float = VERSION_TIMEOUT  # `opencode --version`'s (OCM_VERSION_TIMEOUT)
    # Provider control (limits/): how long a slot's lease lives unless renewed
    # (OCM_LEASE_TTL), and the circuit breaker per provider: transient failures within a
    # window that open it (OCM_BREAKER_THRESHOLD, OCM_BREAKER_WINDOW) and how long it stays
    # open before a trial turn (OCM_BREAKER_COOLDOWN; the provider's retry-after may say more).
    lease_ttl: float = 30.0
    breaker_threshold: int = 5
    breaker_window: float = 60.0
    breaker_cooldown: float = 30.0

    @classmethod
    def load(
        cls,
        *,
        home: str | os.PathLike[str] | None = None,
        opencode: str | None = None,
        environ: Mapping[str, str] | None = None,
        http_timeout: float | None = None,
    ) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home_value = home or env.get("OCM_HOME")
        if not home_value:
            import platformdirs  # only when needed: keepers always get their home

            home_value = platformdirs.user_state_dir(APP_NAME)
        binary = opencode or env.get("OCM_OPENCODE") or None
        lock_wait = _seconds(env, "OCM_REGISTRY_TIMEOUT", 15.0)
        return cls(
            home=Path(home_value).expanduser().absolute(),
            opencode=binary,
            environ=env,
            registry_timeout=max(0.0, lock_wait),
            warmup_timeout=_seconds(env, "OCM_WARMUP_TIMEOUT", 30.0),
            http_timeout=http_timeout or _positive(env, "OCM_HTTP_TIMEOUT", HTTP_TIMEOUT),
            version_timeout=_positive(env, "OCM_VERSION_TIMEOUT", VERSION_TIMEOUT),
            lease_ttl=_positive(env, "OCM_LEASE_TTL", 30.0),
            breaker_threshold=max(1, int(_positive(env, "OCM_BREAKER_THRESHOLD", 5))),
            breaker_window=_positive(env, "OCM_BREAKER_WINDOW", 60.0),
            breaker_cooldown=_positive(env, "OCM_BREAKER_COOLDOWN", 30.0),
        )

    # -- derived paths ---------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.home / "registry.db"

    @property
    def instances_dir(self) -> Path:
        return self.home / "instances"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def worktrees_dir(self) -> Path:
        """Git worktrees of tasks run with --worktree, one per task id."""
        return self.home / "worktrees"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def install_dir(self) -> Path:
        return self.home / "opencode"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    def instance_dir(self, name: str) -> Path:
        return self.instances_dir / name

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def password_path(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.password"

    @property
    def user_home(self) -> Path:
        return Path(self.environ.get("HOME") or Path.home())

    @property
    def user_data_home(self) -> Path:
        """The user's own XDG data dir, where OpenCode keeps auth.json."""
        value = self.environ.get("XDG_DATA_HOME")
        return Path(value) if value else self.user_home / ".local" / "share"

    @property
    def user_state_home(self) -> Path:
        """The user's own XDG state dir, where OpenCode 2 registers its background service."""
        value = self.environ.get("XDG_STATE_HOME")
        return Path(value) if value else self.user_home / ".local" / "state"

    def ensure_home(self) -> None:
        """Create the state directories, private to the user (0700 whatever the umask), or
        say clearly why we cannot. Nothing is written to find out: many commands run at once.
        """
        try:
            for path in (
                self.home,
                self.instances_dir,
                self.logs_dir,
                self.locks_dir,
                self.secrets_dir,
            ):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                if path.stat().st_mode & 0o077:
                    os.chmod(path, 0o700)
            writable = os.access(self.home, os.W_OK | os.X_OK)
        except OSError as exc:
            if self.home.exists() and not self.home.is_dir():
                raise StateError(
                    f"OCM_HOME {self.home} is a file, not a directory; point OCM_HOME at a "
                    "directory (it is created if missing)"
                ) from exc
            raise StateError(
                f"OCM_HOME {self.home} is not writable ({exc.strerror or exc}); "
                "fix its permissions or point OCM_HOME at a writable directory"
            ) from exc
        if not writable:
            raise StateError(
                f"OCM_HOME {self.home} is not writable; fix its permissions or point OCM_HOME "
                "at a writable directory"
            )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration variable in seconds (never negative)."""
    try:
        return max(0.0, float(env.get(name) or default))
    except ValueError:
        raise StateError(f"invalid {name} {env[name]!r}: seconds expected") from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration variable in seconds that must be above 0 (0 would mean "never answer")."""
    value = _seconds(env, name, default)
    if value <= 0:
        raise StateError(f"invalid {name} {env[name]!r}: seconds above 0 expected")
    return value
