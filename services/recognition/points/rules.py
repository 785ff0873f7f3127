"""The scoring rules file (``rules.yaml``): load it, or refuse it with the line and the reason.

It becomes the rules' model (:class:`RuleSet` of :class:`Rule` and :class:`Badge`, in
:mod:`~services.recognition.points.domain`, which also evaluates it). Stateful guards (monthly
limits, "once per N business days", "the linked request was delivered", the giver-to-receiver
cap) are named in the file and carried out by the scorer, which has the state.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Container

import yaml

from services.recognition.points.domain import BADGE_KINDS, GUARDS, OPS, TIER_ORDER, Badge, Condition, Rule, RuleSet
from shared.config import ConfigError
from shared.events import registered_types
from shared.vocabulary import Role, values

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
ROLES = values(Role)  # a rule's counterpart_role
_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")


class RulesError(ConfigError):
    """The rules file is unusable; the message names the file, the line and the reason."""


class _LineLoader(yaml.SafeLoader):
    """Remembers the line of every mapping, so errors can point at it."""


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key, self.line = key, line


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = getattr(key_node, "value", None)
        if isinstance(key, str):
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
    mapping = _Lined(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return mapping


class _Lined(dict):
    line = 0
    lines: dict = {}


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads on/off/yes/no as booleans, which would turn the key "on:" into True. Only
# true/false are booleans in this file.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_rules(path: Path | str = DEFAULT_RULES) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules file: {exc.strerror}") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "rules.yaml") -> RuleSet:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise RulesError(f"{source} line {exc.line}: {exc.key!r} is given twice") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RulesError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return _Validator(source).ruleset(doc)


class _Validator:
    def __init__(self, source: str):
        self.source = source
        self.known_types = {spec.type: spec for spec in registered_types()}

    def fail(self, node: Any, reason: str, key: str | None = None) -> None:
        line = getattr(node, "lines", {}).get(key) if key else None
        line = line or getattr(node, "line", 0)
        raise RulesError(f"{self.source} line {line}: {reason}")

    def ruleset(self, doc: Any) -> RuleSet:
        if not isinstance(doc, dict):
            raise RulesError(f"{self.source} line 1: expected a mapping with version, rules and badges")
        if doc.get("version") != 1:
            self.fail(doc, "version must be 1", "version")
        self.known_keys(doc, {"version", "limits", "rules", "badges"}, "")
        limits = doc.get("limits") or {}
        if not isinstance(limits, dict):
            self.fail(doc, "limits must be a mapping", "limits")
        cap = limits.get("giver_to_receiver_monthly_points")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 0):
            self.fail(limits, "giver_to_receiver_monthly_points must be a whole number >= 0", "giver_to_receiver_monthly_points")
        badges = self.badges(doc, doc.get("badges"))
        rules = self.rules(doc, doc.get("rules"), badges)
        return RuleSet(rules=tuple(rules), badges=badges, giver_to_receiver_monthly_points=cap, source=self.source,
                       event_types=frozenset(r.on for r in rules))

    def badges(self, doc: Any, raw: Any) -> dict[str, Badge]:
        if not isinstance(raw, list):
            self.fail(doc, "badges must be a list", "badges")
        out: dict[str, Badge] = {}
        for item in raw:
            bid = self.entry_id(doc, item, "badge", out)
            if not isinstance(item.get("kind"), str) or item["kind"] not in BADGE_KINDS:
                self.fail(item, f"badge {bid!r}: kind must be one of {', '.join(BADGE_KINDS)}", "kind")
            for key in ("name", "description"):
                if not isinstance(item.get(key), str) or not item[key].strip():
                    self.fail(item, f"badge {bid!r}: {key} is required", key)
            if ("tiers" in item) == ("threshold" in item):
                self.fail(item, f"badge {bid!r}: give either tiers (bronze/silver/gold) or one threshold")
            if "threshold" in item:
                tiers = ((None, self.positive(item, "threshold", bid)),)
            else:
                raw_tiers = item["tiers"]
                if not isinstance(raw_tiers, dict) or not raw_tiers or set(raw_tiers) - set(TIER_ORDER):
                    self.fail(item, f"badge {bid!r}: tiers are bronze, silver, gold with thresholds", "tiers")
                tiers = tuple((t, self.positive(raw_tiers, t, bid)) for t in TIER_ORDER if t in raw_tiers)
                if [n for _, n in tiers] != sorted({n for _, n in tiers}):
                    self.fail(item, f"badge {bid!r}: tier thresholds must grow from bronze to gold", "tiers")
            self.known_keys(item, {"id", "name", "description", "kind", "tiers", "threshold"}, f"badge {bid!r}: ")
            out[bid] = Badge(bid, item["name"].strip(), item["description"].strip(), item["kind"], tiers)
        return out

    def entry_id(self, doc: Any, item: Any, noun: str, seen: Container[str]) -> str:
        """The id of one entry of the ``badges`` or ``rules`` list: a mapping whose id is a slug
        not ``seen`` before."""
        if not isinstance(item, dict):
            self.fail(doc, f"each {noun} must be a mapping", f"{noun}s")
        ident = item.get("id")
        if not isinstance(ident, str) or not _ID.fullmatch(ident):
            self.fail(item, f"{noun} id must be a lower-case slug", "id")
        if ident in seen:
            self.fail(item, f"{noun} {ident!r} is defined twice", "id")
        return ident

    def known_keys(self, node: dict, allowed: set[str], owner: str) -> None:
        """Refuse keys the file does not know (``owner``: what the message is about, if not the file)."""
        unknown = set(node) - allowed
        if unknown:
            self.fail(node, f"{owner}unknown key(s) {', '.join(sorted(unknown))}", sorted(unknown)[0])

    def positive(self, node: dict, key: str, owner: str) -> int:
        value = node.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(node, f"{owner}: {key} must be a whole number >= 1", key)
        return value

    def rules(self, doc: Any, raw: Any, badges: dict[str, Badge]) -> list[Rule]:
        if not isinstance(raw, list) or not raw:
            self.fail(doc, "rules must be a non-empty list", "rules")
        seen: set[str] = set()
        out = []
        allowed = {"id", "on", "when", "to", "points", "reason", "badges", "resets", "counterpart",
                   "counterpart_role", "giver", "limit", "once_per", "requires"}
        for item in raw:
            rid = self.entry_id(doc, item, "rule", seen)
            seen.add(rid)
            self.known_keys(item, allowed, f"rule {rid!r}: ")
            on = item.get("on")
            if not isinstance(on, str) or on not in self.known_types:
                self.fail(item, f"rule {rid!r}: unknown event type {on!r}", "on")
            fields = self.known_types[on].schema.model_fields
            to = item.get("to")
            if not isinstance(to, str) or to not in fields:
                self.fail(item, f"rule {rid!r}: {on} has no field {to!r} to award", "to")
            points = item.get("points")
            if not isinstance(points, int) or isinstance(points, bool) or not 0 <= points <= 10_000:
                self.fail(item, f"rule {rid!r}: points must be a whole number from 0 to 10000", "points")
            reason = item.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                self.fail(item, f"rule {rid!r}: a reason is required (it explains the ledger)", "reason")
            when = self.conditions(item, rid, on, fields)
            refs = {}
            for key in ("badges", "resets"):
                value = item.get(key, [])
                if not isinstance(value, list) or any(not isinstance(b, str) or b not in badges for b in value):
                    self.fail(item, f"rule {rid!r}: {key} must list known badge ids ({', '.join(badges)})", key)
                refs[key] = tuple(value)
            for bid in refs["resets"]:
                if badges[bid].kind != "streak":
                    self.fail(item, f"rule {rid!r}: only streak badges can be reset ({bid} is {badges[bid].kind})", "resets")
            for bid in refs["badges"]:
                if badges[bid].kind == "distinct" and not item.get("counterpart"):
                    self.fail(item, f"rule {rid!r}: distinct badge {bid} needs a counterpart field", "badges")
            for key in ("counterpart", "giver"):
                if item.get(key) is not None and (not isinstance(item[key], str) or item[key] not in fields):
                    self.fail(item, f"rule {rid!r}: {on} has no field {item[key]!r}", key)
            role = item.get("counterpart_role")
            if role is not None and (not isinstance(role, str) or role not in ROLES):
                self.fail(item, f"rule {rid!r}: counterpart_role must be one of {', '.join(ROLES)}", "counterpart_role")
            limit = item.get("limit")
            per_month = None
            if limit is not None:
                if not isinstance(limit, dict) or set(limit) != {"per_month"}:
                    self.fail(item, f"rule {rid!r}: limit takes per_month", "limit")
                per_month = self.positive(limit, "per_month", f"rule {rid!r}")
            once = item.get("once_per")
            once_key = once_days = None
            if once is not None:
                if (not isinstance(once, dict) or set(once) != {"key", "business_days"}
                        or not isinstance(once["key"], str) or once["key"] not in fields):
                    self.fail(item, f"rule {rid!r}: once_per takes key (a field of {on}) and business_days", "once_per")
                once_key = once["key"]
                once_days = once["business_days"]
                if not isinstance(once_days, (int, float)) or isinstance(once_days, bool) or once_days <= 0:
                    self.fail(item, f"rule {rid!r}: once_per.business_days must be > 0", "once_per")
            requires = item.get("requires")
            if requires is not None and (not isinstance(requires, str) or requires not in GUARDS):
                self.fail(item, f"rule {rid!r}: requires must be one of {', '.join(GUARDS)}", "requires")
            out.append(Rule(
                id=rid, on=on, to=to, points=points, reason=reason.strip(), when=when,
                badges=refs["badges"], resets=refs["resets"], counterpart=item.get("counterpart"),
                counterpart_role=role, giver=item.get("giver"), limit_per_month=per_month,
                once_per_key=once_key, once_per_business_days=once_days, requires=requires, line=item.line,
            ))
        return out

    def conditions(self, item: dict, rid: str, on: str, fields: dict) -> tuple[Condition, ...]:
        when = item.get("when") or {}
        if not isinstance(when, dict):
            self.fail(item, f"rule {rid!r}: when must map fields to conditions", "when")
        out = []
        for name, spec in when.items():
            if not isinstance(name, str) or name not in fields:
                self.fail(when, f"rule {rid!r}: {on} has no field {name!r}", name)
            if isinstance(spec, dict):
                if len(spec) != 1 or next(iter(spec)) not in OPS:
                    self.fail(when, f"rule {rid!r}: condition on {name} must be one of {', '.join(OPS)}", name)
                op, value = next(iter(spec.items()))
                if op == "in" and not isinstance(value, list):
                    self.fail(when, f"rule {rid!r}: 'in' needs a list", name)
            else:
                op, value = "eq", spec
            out.append(Condition(name, op, value))
        return tuple(out)
