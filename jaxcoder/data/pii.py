"""PII redaction with StarCoder's placeholders: emails -> <EMAIL>, keys and secrets -> <KEY>,
passwords -> <PASSWORD>, public IP addresses -> one of StarPII's synthetic addresses.

StarCoder used a NER model (StarPII) for names, keys and passwords; without weights here, this is
the regex path bigcode-dataset also ships (BigScience email/IP regexes, detect-secrets-style key
patterns). Private, loopback and well-known DNS addresses are left alone, as StarPII does; the
same secret gets the same replacement throughout a file.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])|"
                  r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![\w:])")
# Provider-shaped keys (AWS, GitHub, Slack, Google, Stripe, OpenAI-like) and PEM private keys.
KEY_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[0-9A-Za-z]{16,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9]{32,}\b"),
    re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY-----[\s\S]+?-----END "
               r"(?:RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY-----"),
]
# A quoted high-entropy value assigned to a key-like name: api_key = "....".
KEY_ASSIGN = re.compile(
    r"""(?i)\b[\w.-]*(?:api[_-]?key|secret|token|access[_-]?key|private[_-]?key|auth)[\w.-]*\s*[:=]\s*"""
    r"""(?:[rbuf]?["'])([A-Za-z0-9+/_=\-.]{16,})["']""")
PASSWORD_ASSIGN = re.compile(
    r"""(?i)\b[\w.-]*(?:password|passwd|pwd)[\w.-]*\s*[:=]\s*[rbuf]?["']([^"'\s]{4,})["']""")

PLACEHOLDERS = {"email": "<EMAIL>", "key": "<KEY>", "password": "<PASSWORD>"}
SYNTHETIC_IPV4 = ("172.16.31.10", "172.16.58.3", "172.16.17.32", "192.168.127.12", "192.168.3.11")
SYNTHETIC_IPV6 = ("fd00:c2b6:b24b:be67:2827:688d:e6a1:6a3b", "fd00:a516:7c1b:17cd:6d81:2137:bd2a:2c5b",
                  "fc00:e968:6179::de52:7100", "fc00:db20:35b:7399::5", "fdf8:f53e:61e4::18")
POPULAR_DNS = frozenset({"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
                         "208.67.222.222", "208.67.220.220", "76.76.19.19", "76.223.122.150"})


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def _looks_random(s: str) -> bool:
    """Gibberish test: long, mixed character classes, high entropy (not a word or a path)."""
    classes = sum(bool(re.search(p, s)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return len(s) > 8 and classes >= 2 and _entropy(s) > 3.0 and not s.isalpha()


def _public_ip(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if value in POPULAR_DNS or ip.is_private or ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return False
    if ip.is_reserved or ip.is_link_local:
        return False
    # Version-like strings (1.2.3.4 in changelogs) are common in code: require a plausible address.
    return not (ip.version == 4 and all(int(p) < 10 for p in value.split(".")))


def redact(text: str) -> tuple[str, Counter]:
    """Returns (redacted text, counts per kind). Same value -> same replacement within the text."""
    spans: list[tuple[int, int, str, str]] = []  # start, end, kind, value

    def add(m: re.Match, kind: str, group: int = 0):
        spans.append((m.start(group), m.end(group), kind, m.group(group)))

    for m in EMAIL.finditer(text):
        add(m, "email")
    for pattern in KEY_PATTERNS:
        for m in pattern.finditer(text):
            add(m, "key")
    for m in KEY_ASSIGN.finditer(text):
        if _looks_random(m.group(1)):
            add(m, "key", 1)
    for m in PASSWORD_ASSIGN.finditer(text):
        value = m.group(1)
        if len(value) > 3 and not value.startswith(("<", "$", "{", "%")):
            add(m, "password", 1)
    for pattern in (IPV4, IPV6):
        for m in pattern.finditer(text):
            if _public_ip(m.group(0)):
                add(m, "ip_address")
    if not spans:
        return text, Counter()
    # Resolve overlaps: earliest start wins, then the longest span.
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    chosen, end = [], -1
    for span in spans:
        if span[0] >= end:
            chosen.append(span)
            end = span[1]
    replacement: dict[str, str] = {}
    counts: Counter = Counter()
    out, last = [], 0
    for start, stop, kind, value in chosen:
        if kind == "ip_address":
            pool = SYNTHETIC_IPV6 if ":" in value else SYNTHETIC_IPV4
            new = replacement.setdefault(value, pool[len(replacement) % len(pool)])
        else:
            new = PLACEHOLDERS[kind]
        out.append(text[last:start])
        out.append(new)
        last = stop
        counts[kind] += 1
    out.append(text[last:])
    return "".join(out), counts
