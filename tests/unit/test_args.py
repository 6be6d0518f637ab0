"""multiplane.spec.args: CNI_* environment per command, name validators and strict CNI_ARGS parsing.

Reference texts are those of containernetworking/cni `pkg/skel` and `types.LoadArgs`
(cni-spec.md §1.2, §7.2 and vectors T34–T37).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from multiplane.errors import InvalidEnvironment
from multiplane.spec.args import CmdArgs, parse_bool, parse_cni_args, validate_container_id, validate_ifname

FULL_ENV = {
    "CNI_CONTAINERID": "ctr1",
    "CNI_NETNS": "/var/run/netns/t",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "IgnoreUnknown=1",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}

# Keys a plugin might accept; each parser returns its input unchanged so values round-trip.
KNOWN = {"IP": str, "MAC": str, "K8S_POD_NAME": str, "K8S_POD_NAMESPACE": str}


def ip_parser(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# ---- CmdArgs.from_env ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        ("ADD", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]),
        ("CHECK", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]),
        ("DEL", ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
        ("GC", ["CNI_PATH"]),
        ("STATUS", ["CNI_PATH"]),
    ],
)
def test_from_env_required_per_command(command: str, missing: list[str]) -> None:
    """Each command requires exactly skel's variables, listed in table order when absent."""
    with pytest.raises(InvalidEnvironment) as info:
        CmdArgs.from_env({"CNI_COMMAND": command})
    assert info.value.code == 4
    assert info.value.msg == f"required env variables [{','.join(missing)}] missing"


@pytest.mark.parametrize("command", ["VERSION", "NOPE", "version"])
def test_from_env_requires_nothing_else_for_other_commands(command: str) -> None:
    """VERSION and unknown commands need only CNI_COMMAND (dispatch rejects unknown ones later)."""
    args = CmdArgs.from_env({"CNI_COMMAND": command})
    assert args.command == command
    assert (args.container_id, args.netns, args.ifname, args.args, args.path) == ("", "", "", "", ())


def test_from_env_missing_command() -> None:
    """No CNI_COMMAND is reported as `required env variables [CNI_COMMAND] missing`."""
    with pytest.raises(InvalidEnvironment) as info:
        CmdArgs.from_env(FULL_ENV)
    assert info.value.msg == "required env variables [CNI_COMMAND] missing"


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"])
def test_from_env_fields(command: str) -> None:
    """A full environment fills every field, splits CNI_PATH on ':' and keeps stdin and env."""
    env = {"CNI_COMMAND": command, **FULL_ENV, "OTHER": "x"}
    args = CmdArgs.from_env(env, b"{}")
    assert args.command == command
    assert (args.container_id, args.netns, args.ifname) == ("ctr1", "/var/run/netns/t", "eth0")
    assert args.args == "IgnoreUnknown=1"
    assert args.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert args.stdin == b"{}"
    assert args.env["OTHER"] == "x"


def test_from_env_path_drops_empty_entries() -> None:
    """Empty CNI_PATH entries (`::`, a trailing `:`) are dropped."""
    args = CmdArgs.from_env({"CNI_COMMAND": "GC", "CNI_PATH": ":/a::/b:"})
    assert args.path == ("/a", "/b")


def test_from_env_del_netns_optional() -> None:
    """DEL accepts a missing or empty CNI_NETNS."""
    env = {k: v for k, v in FULL_ENV.items() if k != "CNI_NETNS"}
    assert CmdArgs.from_env({"CNI_COMMAND": "DEL", **env}).netns == ""
    assert CmdArgs.from_env({"CNI_COMMAND": "DEL", **env, "CNI_NETNS": ""}).netns == ""


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_from_env_validates_ids(command: str) -> None:
    """ADD, CHECK and DEL validate the container id and the ifname."""
    with pytest.raises(InvalidEnvironment, match="invalid characters in containerID"):
        CmdArgs.from_env({"CNI_COMMAND": command, **FULL_ENV, "CNI_CONTAINERID": "a%b"})
    with pytest.raises(InvalidEnvironment, match="interface name is . or .."):
        CmdArgs.from_env({"CNI_COMMAND": command, **FULL_ENV, "CNI_IFNAME": ".."})


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_from_env_ignores_unused_bad_ids(command: str) -> None:
    """GC, STATUS and VERSION do not validate ids they do not use."""
    args = CmdArgs.from_env({"CNI_COMMAND": command, **FULL_ENV, "CNI_CONTAINERID": "a%b", "CNI_IFNAME": "a b"})
    assert (args.container_id, args.ifname) == ("a%b", "a b")


def test_from_env_ifname_error_beats_missing_container_id() -> None:
    """A bad ifname is raised even though the (earlier) container id is missing, as skel does."""
    env = {"CNI_COMMAND": "ADD", **FULL_ENV, "CNI_IFNAME": "a/b"}
    del env["CNI_CONTAINERID"]
    with pytest.raises(InvalidEnvironment, match="interface name contains"):
        CmdArgs.from_env(env)


# ---- validators ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "0", "ctr1", "a_b.c-d", "A" * 300, "1-"])
def test_container_id_accepts(value: str) -> None:
    """Container ids matching `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$` are accepted."""
    validate_container_id(value)


@pytest.mark.parametrize("value", ["ctr%%1", "_a", "-a", ".a", "a b", "a/b", "a:b", "a\n", "\na", "é", "a+b"])
def test_container_id_rejects(value: str) -> None:
    """Anything else is code 4 `invalid characters in containerID` with the value as details."""
    with pytest.raises(InvalidEnvironment) as info:
        validate_container_id(value)
    assert (info.value.code, info.value.msg, info.value.details) == (4, "invalid characters in containerID", value)


@pytest.mark.parametrize("value", ["eth0", "e", "123456789012345", "net1.100", "ab-c_d", "ééééééé"])
def test_ifname_accepts(value: str) -> None:
    """Names of 1–15 bytes without `/`, `:` or whitespace, other than `.` and `..`, are accepted."""
    validate_ifname(value)


@pytest.mark.parametrize(
    ("value", "msg", "details"),
    [
        ("", "interface name is empty", ""),
        ("1234567890123456", "interface name is too long", "interface name should be less than 16 characters"),
        ("éééééééé", "interface name is too long", "interface name should be less than 16 characters"),
        (".", "interface name is . or ..", ""),
        ("..", "interface name is . or ..", ""),
        ("a/b", "interface name contains / or : or whitespace characters", ""),
        ("eth0:1", "interface name contains / or : or whitespace characters", ""),
        ("a b", "interface name contains / or : or whitespace characters", ""),
        ("a\tb", "interface name contains / or : or whitespace characters", ""),
        ("a\nb", "interface name contains / or : or whitespace characters", ""),
        ("a\u00a0b", "interface name contains / or : or whitespace characters", ""),
    ],
)
def test_ifname_rejects(value: str, msg: str, details: str) -> None:
    """Each invalid interface name form is code 4 with utils.ValidateInterfaceName's text."""
    with pytest.raises(InvalidEnvironment) as info:
        validate_ifname(value)
    assert (info.value.code, info.value.msg, info.value.details) == (4, msg, details)


# ---- CNI_ARGS -----------------------------------------------------------------------------


def arg_error(text: str, known: dict | None = None) -> str:  # type: ignore[type-arg]
    with pytest.raises(InvalidEnvironment) as info:
        parse_cni_args(text, KNOWN if known is None else known)
    assert info.value.code == 4
    return info.value.msg


def test_empty_args_are_fine() -> None:
    """An empty CNI_ARGS parses to nothing."""
    assert parse_cni_args("", KNOWN) == {}


def test_known_pairs_parse() -> None:
    """Known keys are parsed by their parser."""
    got = parse_cni_args("IP=10.1.2.3;MAC=c2:11:22:33:44:55", {"IP": ip_parser, "MAC": str})
    assert got == {"IP": ipaddress.ip_address("10.1.2.3"), "MAC": "c2:11:22:33:44:55"}


def test_unknown_arg_fails() -> None:
    """T34: an unknown key fails with `ARGS: unknown args ["FOO=bar"]`."""
    assert arg_error("FOO=bar") == 'ARGS: unknown args ["FOO=bar"]'


def test_unknown_args_listed_together() -> None:
    """Every unknown pair is listed, in order, Go-quoted and space-separated."""
    assert arg_error("A=1;IP=x;B=2") == 'ARGS: unknown args ["A=1" "B=2"]'


def test_runtime_args_accepted_with_ignore_unknown() -> None:
    """T35: what containerd sends parses when IgnoreUnknown=1, keeping the known keys."""
    text = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=ctr8;K8S_POD_UID=u-1"
    got = parse_cni_args(text, KNOWN)
    assert got == {"IgnoreUnknown": True, "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "p1"}


def test_trailing_semicolon_is_invalid_pair() -> None:
    """T36: a trailing `;` makes an empty pair: `ARGS: invalid pair ""`."""
    assert arg_error("IgnoreUnknown=1;") == 'ARGS: invalid pair ""'


def test_keys_are_case_sensitive() -> None:
    """T37: `ignoreunknown` is not IgnoreUnknown, so both pairs are unknown."""
    assert arg_error("ignoreunknown=1;FOO=bar") == 'ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]'
    assert arg_error("ip=10.1.2.3") == 'ARGS: unknown args ["ip=10.1.2.3"]'


@pytest.mark.parametrize("value", ["1", "true", "True", "TRUE", "tRuE"])
def test_ignore_unknown_true_values(value: str) -> None:
    """IgnoreUnknown accepts 1 and true in any case, and then unknown keys pass."""
    assert parse_cni_args(f"FOO=bar;IgnoreUnknown={value}", KNOWN) == {"IgnoreUnknown": True}


@pytest.mark.parametrize("value", ["0", "false", "False", "FALSE"])
def test_ignore_unknown_false_values(value: str) -> None:
    """IgnoreUnknown=0/false parses as False and unknown keys still fail."""
    assert parse_cni_args(f"IgnoreUnknown={value}", KNOWN) == {"IgnoreUnknown": False}
    assert arg_error(f"IgnoreUnknown={value};FOO=bar") == 'ARGS: unknown args ["FOO=bar"]'


@pytest.mark.parametrize(("value", "shown"), [("yes", "yes"), ("YES", "yes"), ("", ""), ("2", "2")])
def test_ignore_unknown_bad_bool(value: str, shown: str) -> None:
    """A bad IgnoreUnknown value fails with the reference text (the input lower-cased)."""
    pair = f"IgnoreUnknown={value}"
    expected = f'ARGS: error parsing value of pair "{pair}": boolean unmarshal error: invalid input {shown}'
    assert arg_error(pair) == expected


@pytest.mark.parametrize("text", ["IP=10.1.2.3=4", "IP", "IgnoreUnknown=1;FOO", "A==B", "=="])
def test_pair_without_exactly_one_equals_is_invalid(text: str) -> None:
    """A piece with no `=` or with more than one is an invalid pair, even with IgnoreUnknown."""
    bad = next(p for p in text.split(";") if p.count("=") != 1)
    assert arg_error(text) == f'ARGS: invalid pair "{bad}"'


def test_last_occurrence_wins() -> None:
    """A repeated key takes its last value, IgnoreUnknown included."""
    assert parse_cni_args("IP=10.0.0.1;IP=10.0.0.2", {"IP": ip_parser}) == {"IP": ipaddress.ip_address("10.0.0.2")}
    assert parse_cni_args("IgnoreUnknown=0;FOO=bar;IgnoreUnknown=1", KNOWN)["IgnoreUnknown"] is True
    assert arg_error("IgnoreUnknown=1;FOO=bar;IgnoreUnknown=0") == 'ARGS: unknown args ["FOO=bar"]'


def test_known_key_bad_value_fails_despite_ignore_unknown() -> None:
    """A known key with a bad value fails even with IgnoreUnknown=1."""
    msg = arg_error("IgnoreUnknown=1;IP=nope", {"IP": ip_parser})
    assert msg.startswith('ARGS: error parsing value of pair "IP=nope": ')


def test_empty_key_is_unknown() -> None:
    """A pair with an empty key is an unknown arg."""
    assert arg_error("=x") == 'ARGS: unknown args ["=x"]'


def test_quoting_of_special_characters() -> None:
    """Quotes and backslashes in reported pairs are escaped as Go's %q does."""
    assert arg_error('A="b\\c"') == 'ARGS: unknown args ["A=\\"b\\\\c\\""]'


def test_first_bad_pair_is_reported() -> None:
    """Pairs are checked in order, so a bad value before an invalid pair is the error reported (LoadArgs)."""
    msg = arg_error("IgnoreUnknown=yes;;")
    assert msg == 'ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes'


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), ("0", False), ("False", False)])
def test_parse_bool(text: str, value: bool) -> None:
    """parse_bool reads 1/true/0/false in any case."""
    assert parse_bool(text) is value


def test_parse_bool_rejects() -> None:
    """parse_bool raises ValueError with the lower-cased input for anything else."""
    with pytest.raises(ValueError, match="^boolean unmarshal error: invalid input yes$"):
        parse_bool("Yes")


# ---- properties ---------------------------------------------------------------------------

# Printable ASCII without the separators; quotes and backslashes left out so %q is the identity.
_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=';="\\'), max_size=12)
_PAIR = st.tuples(st.sampled_from(sorted(KNOWN)), _TEXT)


@given(st.lists(_PAIR, max_size=8))
def test_known_pairs_round_trip(pairs: list[tuple[str, str]]) -> None:
    """Any `;`-joined list of known pairs parses to the last value of each key."""
    text = ";".join(f"{k}={v}" for k, v in pairs)
    assert parse_cni_args(text, KNOWN) == dict(pairs)


_GOOD_PIECE = st.one_of(
    _PAIR.map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.just("IgnoreUnknown=1"),
    st.tuples(st.from_regex(r"[A-Z]{1,5}", fullmatch=True), _TEXT).map(lambda kv: f"{kv[0]}={kv[1]}"),
)
_BAD_PIECE = st.one_of(
    _TEXT,  # no "=" at all (possibly empty)
    st.tuples(_TEXT, _TEXT, _TEXT).map(lambda t: "=".join(t)),  # two "="
    st.lists(_TEXT, min_size=4, max_size=6).map(lambda parts: "=".join(parts)),
)


@given(st.lists(_GOOD_PIECE, max_size=5), _BAD_PIECE, st.lists(st.one_of(_GOOD_PIECE, _BAD_PIECE), max_size=5))
def test_any_piece_without_one_equals_fails(before: list[str], bad: str, after: list[str]) -> None:
    """Any CNI_ARGS holding a piece without exactly one `=` fails with code 4, naming the first such piece."""
    text = ";".join([*before, bad, *after])
    assume(text)  # an entirely empty CNI_ARGS is valid
    with pytest.raises(InvalidEnvironment) as info:
        parse_cni_args(text, KNOWN)
    assert info.value.code == 4
    assert info.value.msg == f'ARGS: invalid pair "{bad}"'


# ---- hostile bytes (issue 11) ---------------------------------------------------------------

# Any code point, lone surrogates included (hypothesis leaves category Cs out by default).
_ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)


@pytest.mark.parametrize(
    ("value", "msg", "details"),
    [
        ("eth\udcff", "interface name is not valid UTF-8", "eth\\xff"),
        ("e\ud800", "interface name is not valid UTF-8", "e\\ud800"),
        ("eth\0", "interface name contains a NUL character", "eth\\x00"),
    ],
    ids=["surrogateescape", "lone-surrogate", "nul"],
)
def test_ifname_rejects_what_is_not_text(value: str, msg: str, details: str) -> None:
    """Bytes that are not UTF-8 (Python's surrogateescape) or a NUL: code 4, not a UnicodeEncodeError."""
    with pytest.raises(InvalidEnvironment) as info:
        validate_ifname(value)
    assert (info.value.code, info.value.msg, info.value.details) == (4, msg, details)


@pytest.mark.parametrize("variable", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS"])
def test_from_env_refuses_non_utf8_in_every_variable(command: str, variable: str) -> None:
    """Every CNI_* variable, required by the command or not, must be UTF-8: code 4 naming the variable."""
    env = {**FULL_ENV, "CNI_COMMAND": command, variable: "x\udcfe"}
    with pytest.raises(InvalidEnvironment) as info:
        CmdArgs.from_env(env)
    assert info.value.msg == f"{variable} is not valid UTF-8"
    assert info.value.details == "x\\xfe"


@pytest.mark.parametrize(
    "variable", ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]
)
def test_from_env_refuses_nul_in_every_variable(variable: str) -> None:
    """A NUL cannot come through execve, but a forwarded request could carry one: code 4."""
    env = {**FULL_ENV, "CNI_COMMAND": "ADD", variable: "ADD\0x"}
    with pytest.raises(InvalidEnvironment) as info:
        CmdArgs.from_env(env)
    assert info.value.msg == f"{variable} contains a NUL character"


def test_from_env_version_ignores_bad_bytes() -> None:
    """VERSION reads none of the other variables, so their bytes are not checked."""
    args = CmdArgs.from_env({**FULL_ENV, "CNI_COMMAND": "VERSION", "CNI_IFNAME": "\udcff", "CNI_PATH": "a\0"})
    assert args.command == "VERSION"


@given(_ANY_TEXT)
def test_any_cni_args_text_is_parsed_or_refused_with_code_4(text: str) -> None:
    """parse_cni_args never raises anything but InvalidEnvironment, and its messages are UTF-8 text."""
    try:
        parse_cni_args(text, KNOWN)
    except InvalidEnvironment as exc:
        exc.msg.encode()


@given(st.one_of(_ANY_TEXT, st.sampled_from(["eth\udcff", "\ud800", "a\0", "e\udc80th0"])))
def test_validate_ifname_never_raises_anything_else(value: str) -> None:
    """Whatever the text (surrogates included), validate_ifname accepts it or raises InvalidEnvironment."""
    try:
        validate_ifname(value)
    except InvalidEnvironment:
        pass
