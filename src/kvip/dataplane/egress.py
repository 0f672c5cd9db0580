"""Egress backend: Service egress SNAT rules in one nftables table of our own (`nft`, Debian's nftables).

Ownership is the table, `inet kvip_egress` or `inet kvip_egress_<instance_name>`, so two deployments
on one node never clobber each other (kube-vip #1634); no other table is ever read or written. It holds
one NAT chain `postrouting` (hook postrouting, priority srcnat) with one rule per `EgressRule`. A rule's
identity is a digest of its rendered text, carried in its comment (`kvip <digest> <vip> <pod> <service>`),
so read-back needs no parsing of nftables' expressions: a rule whose comment is not ours, or whose
expressions changed since we first saw it, is an item nobody wants, and is removed. A chain that is
not ours as declared (deleted, other hook or policy) makes the whole table be rebuilt.

Each apply is one `nft -f` transaction (atomic: packets see the old rules or the new ones). The table
is deleted once it would hold no rule. `nft monitor` turns any change to our table into a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kvip.core.egress import EgressInputError, parse_instance_name
from kvip.core.model import DesiredState, EgressRule, IPAddress
from kvip.dataplane.base import ApplyError, DataplaneBase, DataplaneError

log = logging.getLogger("kvip.egress")

CHAIN = "postrouting"
CHAIN_SPEC = "type nat hook postrouting priority srcnat; policy accept;"
_CHAIN_FIELDS = {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}
TABLE_PREFIX = "kvip_egress"
_NO_VIP = ipaddress.IPv4Address(0)  # vip_of for a rule that is not ours (reported, then removed)


class EgressError(DataplaneError):
    """nftables could not be read or written."""


@dataclass(frozen=True, order=True)
class EgressItem:
    """One rule of our chain: `digest` of the rule we render, or `foreign:<handle>` / `<digest>!` for a
    rule that is not (or no longer) what we wrote."""

    digest: str
    vip: str

    def __str__(self) -> str:
        return f"egress {self.digest} snat to {self.vip}"


def table_name(instance_name: str = "") -> str:
    """kube-vip's instance_name keeps two deployments' tables apart."""
    try:
        return f"{TABLE_PREFIX}_{parse_instance_name(instance_name)}" if instance_name else TABLE_PREFIX
    except EgressInputError as exc:
        raise EgressError(f"instance_name: {exc}") from None


def render(rule: EgressRule) -> str:
    """The nft rule text (without comment) for one EgressRule."""
    ip = "ip" if rule.pod.version == 4 else "ip6"
    parts = [f"{ip} saddr {rule.pod}"]
    if rule.excluded:
        parts.append(f"{ip} daddr != {{ {', '.join(map(str, rule.excluded))} }}")
    if rule.allowed:
        parts.append(f"{ip} daddr {{ {', '.join(map(str, rule.allowed))} }}")
    if rule.ports:
        pairs = ", ".join(f"{protocol} . {port}" for protocol, port in rule.ports)
        parts.append(f"meta l4proto . th dport {{ {pairs} }}")
    parts.append(f"snat {ip} to {rule.vip}")
    return " ".join(parts)


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class NftEgress(DataplaneBase):
    name = "egress"

    def __init__(self, *, instance_name: str = "", netns: str | None = None, nft: str = "nft") -> None:
        self.table = table_name(instance_name)
        self._prefix: Sequence[str] = ("ip", "netns", "exec", netns, nft) if netns else (nft,)
        self._wanted: dict[str, tuple[str, EgressRule]] = {}  # digest → (rule text, rule)
        self._handles: dict[EgressItem, int] = {}  # from the last read-back
        self._first_seen: dict[str, str] = {}  # digest → expressions when first read back (tamper check)
        self._rebuild = False  # the chain is not ours as declared: delete and recreate the table
        self._exists = False

    # -- Dataplane ---------------------------------------------------------------------------

    def desired(self, state: DesiredState) -> frozenset[EgressItem]:
        wanted: dict[str, tuple[str, EgressRule]] = {}
        for rule in state.egress:
            body = render(rule)
            wanted[digest(body)] = (body, rule)
        self._wanted = wanted
        return frozenset(EgressItem(d, str(rule.vip)) for d, (_, rule) in wanted.items())

    def vip_of(self, item: EgressItem) -> IPAddress:
        try:
            return ipaddress.ip_address(item.vip)
        except ValueError:
            return _NO_VIP

    async def observe(self) -> frozenset[EgressItem]:
        code, out, err = await self._nft("-j", "list", "table", "inet", self.table)
        self._handles, self._rebuild = {}, False
        if code != 0:
            if "No such file or directory" in err:
                self._exists = False
                return frozenset()  # no table: nothing of ours
            raise EgressError(f"cannot list table inet {self.table}: {err.strip()[:300]}")
        self._exists = True
        entries = [e for e in json.loads(out or "{}").get("nftables", []) if isinstance(e, dict)]
        chains = [e["chain"] for e in entries if "chain" in e]
        ours = [c for c in chains if c.get("name") == CHAIN]
        if not ours or any(ours[0].get(k) != v for k, v in _CHAIN_FIELDS.items()):
            self._rebuild = True
            return frozenset()  # nothing in a chain that is not ours as declared counts as held
        seen: dict[str, str] = {}
        for entry in entries:
            rule = entry.get("rule")
            if isinstance(rule, dict) and rule.get("chain") == CHAIN:
                item, body = self._item(rule)
                self._handles[item] = int(rule.get("handle", -1))
                if body is not None:  # ours: its first-seen expressions (a changed one keeps the original)
                    seen[item.digest.rstrip("!")] = body
        self._first_seen = seen
        return frozenset(self._handles)

    def _item(self, rule: Mapping[str, Any]) -> tuple[EgressItem, str | None]:
        words = str(rule.get("comment", "")).split()
        if len(words) < 3 or words[0] != "kvip":
            return EgressItem(f"foreign:{rule.get('handle')}", ""), None
        body = json.dumps(rule.get("expr"), sort_keys=True)
        first = self._first_seen.get(words[1], body)
        if first != body:
            return EgressItem(f"{words[1]}!", words[2]), first  # changed behind our back: replace it
        return EgressItem(words[1], words[2]), body

    async def apply(self, add: frozenset[EgressItem], remove: frozenset[EgressItem]) -> None:
        table = f"inet {self.table}"
        lines = [f"add table {table}"]
        if self._rebuild:
            lines += [f"delete table {table}", f"add table {table}"]
        remaining = (set(self._handles) - remove) | add
        if not remaining:
            lines.append(f"delete table {table}")  # nothing left to hold: leave no empty table behind
        else:
            lines.append(f"add chain {table} {CHAIN} {{ {CHAIN_SPEC} }}")
            if not self._rebuild:
                lines += [f"delete rule {table} {CHAIN} handle {self._handles[i]}" for i in sorted(remove)
                          if i in self._handles]
            for item in sorted(add):
                body, rule = self._wanted[item.digest]
                comment = f"kvip {item.digest} {rule.vip} {rule.pod} {rule.service}"[:120]
                lines.append(f'add rule {table} {CHAIN} {body} comment "{comment}"')
        code, _, err = await self._nft("-f", "-", script="\n".join(lines) + "\n")
        if code != 0:
            why = err.strip().splitlines()[0][:300] if err.strip() else f"nft exited {code}"
            raise ApplyError({item: why for item in add | remove})
        touched = {i.digest.rstrip("!") for i in add | remove}
        self._first_seen = {} if self._rebuild else {d: b for d, b in self._first_seen.items() if d not in touched}
        self._rebuild = False

    async def changes(self) -> AsyncIterator[None]:
        """One hint per `nft monitor` line naming our table (our own writes included: one spare pass)."""
        while True:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._prefix, "monitor", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            except OSError as exc:
                log.warning("egress: cannot run nft monitor (%s); relying on the periodic re-read", exc)
                await asyncio.Event().wait()
                return
            try:
                assert process.stdout is not None
                async for line in process.stdout:
                    words = line.decode(errors="replace").split()
                    if self.table in words and "inet" in words:
                        yield None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await asyncio.sleep(1.0)  # nft monitor ended (it should not): start it again

    def status(self) -> Mapping[str, object]:
        return {"table": f"inet {self.table}", "rules": len(self._wanted)}

    # -- nft ---------------------------------------------------------------------------------

    async def _nft(self, *args: str, script: str | None = None) -> tuple[int, str, str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._prefix, *args, stdin=asyncio.subprocess.PIPE if script is not None else None,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise EgressError(f"cannot run nft: {exc}") from exc
        out, err = await process.communicate(script.encode() if script is not None else None)
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
