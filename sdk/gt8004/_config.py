"""Transport settings and the statistics snapshot (the SDK's health probe)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ._errors import ConfigError

__all__ = ["TransportConfig", "TransportStats"]


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """How the transport batches, bounds memory, retries and shuts down.

    ``GT8004Logger`` takes most of them as keyword arguments.
    """

    batch_size: int = 50                 # send when this many entries are queued ...
    flush_interval: float = 5.0          # ... or when the oldest queued entry is this old (s)
    max_batch_bytes: int = 512 * 1024    # ... or when queued entries reach this size (uncompressed)
    max_queue_entries: int = 10_000      # memory bound: queued + in flight, in entries ...
    max_queue_bytes: int = 32 * 1024 * 1024  # ... and in bytes; beyond it: spool, else drop
    spool_dir: str | os.PathLike[str] | None = None  # on-disk spool (survives restarts); None: off
    max_spool_bytes: int = 256 * 1024 * 1024
    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)  # waits between attempts (+ jitter)
    jitter: float = 0.2                  # up to +20 % of each delay
    max_retry_after: float = 60.0        # cap on a server's Retry-After
    timeout: float = 10.0                # per HTTP request (s)
    gzip: bool = True                    # gzip bodies of 1 KiB and more
    breaker_threshold: int = 3           # consecutive failed flushes that open the breaker
    breaker_cooldown: float = 10.0       # first wait before a half-open probe (doubles, capped)
    breaker_max_cooldown: float = 120.0
    exit_timeout: float = 2.0            # how long the at-exit flush may take (s)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        if self.flush_interval <= 0:
            raise ConfigError("flush_interval must be positive")
        if self.max_batch_bytes < 1024:
            raise ConfigError("max_batch_bytes must be at least 1024")
        if self.max_queue_entries < self.batch_size:
            raise ConfigError("max_queue_entries must be at least batch_size")
        if self.max_queue_bytes < self.max_batch_bytes:
            raise ConfigError("max_queue_bytes must be at least max_batch_bytes")
        if any(d < 0 for d in self.retry_delays):
            raise ConfigError("retry_delays must not be negative")
        if self.breaker_threshold < 1:
            raise ConfigError("breaker_threshold must be at least 1")
        if self.timeout <= 0 or self.exit_timeout < 0:
            raise ConfigError("timeout must be positive and exit_timeout not negative")


@dataclass(slots=True)
class TransportStats:
    """A snapshot of what the transport did so far; ``healthy`` says whether it is delivering."""

    queued: int = 0                      # entries in memory (queued, put back, in flight)
    queued_bytes: int = 0
    spool_bytes: int = 0                 # bytes waiting in the on-disk spool
    delivered: int = 0                   # entries the server accepted
    rejected: int = 0                    # entries the server refused (listed in a 202 answer)
    spooled: int = 0                     # entries written to the spool (overflow or at exit)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> entries lost (reported)
    batches_sent: int = 0
    failed_flushes: int = 0              # batches whose retries all failed
    breaker_state: str = "closed"
    auth_failed: bool = False            # 401/403 seen: sending stopped
    last_error: str = ""

    @property
    def healthy(self) -> bool:
        return self.breaker_state == "closed" and not self.auth_failed

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())
