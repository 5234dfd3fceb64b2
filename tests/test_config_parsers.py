"""The keepalived.conf and haproxy.cfg parsers on the corpus (tests/data/configs, see SOURCES.md):
real files written by others, and synthetic ones for what those lack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaoslab.configs import haproxy, keepalived
from chaoslab.configs.statements import ParsedConfig, Place, Statement
from chaoslab.errors import ChaoslabError

CORPUS = Path(__file__).parent / "data" / "configs"
KEEPALIVED = CORPUS / "keepalived"
HAPROXY = CORPUS / "haproxy"
SYNTHETIC = CORPUS / "synthetic"
KEEPALIVED_SAMPLES = sorted(KEEPALIVED.iterdir())
HAPROXY_EXAMPLES = sorted(HAPROXY.iterdir())
LB = SYNTHETIC / "keepalived" / "lb.conf"
ENVIRONMENT = SYNTHETIC / "haproxy" / "environment.cfg"


def walk(statements: tuple[Statement, ...]):
    for statement in statements:
        yield statement
        yield from walk(statement.children)


def names(parsed: ParsedConfig, keyword: str) -> list[str | None]:
    return [statement.name for statement in parsed.all(keyword)]


def lines(statement: Statement) -> list[tuple[str, tuple[str, ...]]]:
    return [(child.keyword, child.words) for child in statement.children]


def line_of(statement: Statement) -> str:
    return statement.place.file.read_text(encoding="utf-8").splitlines()[statement.place.line - 1]


def test_the_corpus_is_what_sources_lists():
    assert len(KEEPALIVED_SAMPLES) == 25 and len(HAPROXY_EXAMPLES) == 8
    listed = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    synthetic = [path.relative_to(SYNTHETIC) for path in SYNTHETIC.rglob("*") if path.is_file()]
    for name in [*(path.name for path in [*KEEPALIVED_SAMPLES, *HAPROXY_EXAMPLES]), *map(str, synthetic)]:
        assert f"| {name} |" in listed, name


# keepalived: every sample


@pytest.mark.parametrize("path", KEEPALIVED_SAMPLES, ids=lambda path: path.name)
def test_every_keepalived_sample_parses_without_a_note_and_each_statement_is_on_its_line(path: Path):
    parsed = keepalived.parse(path, config_id="other")
    assert parsed.files == (path,)
    if path.name != "keepalived.conf.conditional_conf":
        assert parsed.notes == ()
    for statement in walk(parsed.statements):
        assert statement.keyword in line_of(statement), statement.place


def test_keepalived_vrrp_instances_and_their_vips():
    parsed = keepalived.parse(KEEPALIVED / "keepalived.conf.vrrp", config_id="lb1")
    assert names(parsed, "vrrp_instance") == ["VI_1", "VI_2", "VI_3", "VI_4"]
    first = parsed.first("vrrp_instance")
    assert first.place.line == 13
    assert [child.keyword for child in first.children] == [
        "state", "interface", "garp_master_delay", "smtp_alert", "virtual_router_id", "priority", "advert_int",
        "authentication", "virtual_ipaddress"]
    assert lines(first.first("authentication")) == [("auth_type", ("PASS",)), ("auth_pass", ("1111",))]
    assert first.first("authentication").first("auth_pass").place.line == 23
    assert lines(first.first("virtual_ipaddress")) == [
        ("192.168.200.16", ()), ("192.168.200.17", ()), ("192.168.200.18", ()), ("192.168.200.18", ("label", "eth0:1"))]
    assert first.first("virtual_ipaddress").children[-1].place.line == 32
    assert first.word("priority") == "100" and first.word("garp_master_delay") == "10"


def test_keepalived_vips_with_dev_and_comments_after_words():
    parsed = keepalived.parse(KEEPALIVED / "keepalived.conf.track_interface", config_id="lb1")
    instance = parsed.first("vrrp_instance")
    assert instance.word("interface") == "eth0.1"  # "# Vlaned interface" is a comment
    assert lines(instance.first("track_interface")) == [("eth0", ()), ("eth1", ())]
    assert lines(instance.first("virtual_ipaddress")) == [
        ("192.168.200.16", ()), ("192.168.200.17", ("dev", "eth1")), ("192.168.200.18", ("dev", "eth2"))]
    assert instance.first("virtual_ipaddress").children[1].place.line == 25
    routes = keepalived.parse(KEEPALIVED / "keepalived.conf.vrrp.routes", config_id="lb1").first("vrrp_instance")
    assert lines(routes.first("virtual_routes"))[-2:] == [
        ("blackhole", ("192.168.113.1/32",)), ("0.0.0.0/0", ("gw", "192.168.0.1", "table", "100"))]


def test_keepalived_conditional_lines_for_each_host():
    path = KEEPALIVED / "keepalived.conf.conditional_conf"
    high, low, other = (keepalived.parse(path, config_id=host) for host in ("high", "low", "other"))
    assert [(s.keyword, s.words) for s in high.statements[:1]] == [("net_namespace", ("high",))]
    assert high.first("vrrp_script").word("script") == "/etc/keepalived/scripts/check_high_VI_0.sh"
    assert high.first("vrrp_script").first("script").place.line == 7
    assert high.first("vrrp_instance").word("priority") == "170"
    assert low.first("vrrp_instance").word("priority") == "85"
    assert low.first("net_namespace").words == ("low",)
    assert other.first("net_namespace") is None and other.first("vrrp_instance").first("priority") is None
    assert [str(note) for note in high.notes] == [
        f"{path}:3: lines @high read for config id 'high' (as given): {path}:3, 7, 19",
        f"{path}:4: lines @low skipped for config id 'high' (as given): {path}:4, 8, 20"]
    assert lines(high.first("vrrp_instance").first("track_interface")) == [("eth3", ()), ("eth2", ("weight", "20"))]


def test_keepalived_default_config_id_is_the_node_name_and_is_noted():
    node = os.uname().nodename.split(".")[0]
    assert keepalived.default_config_id() == node
    parsed = keepalived.parse(KEEPALIVED / "keepalived.conf.conditional_conf")
    assert len(parsed.notes) == 2
    assert all(f"config id {node!r} (keepalived's default: this machine's node name)" in note.message
               for note in parsed.notes)


def test_keepalived_quoted_scripts_are_one_word_and_their_argv():
    parsed = keepalived.parse(KEEPALIVED / "keepalived.conf.vrrp.localcheck", config_id="lb1")
    assert names(parsed, "vrrp_script") == ["chk_sshd", "chk_haproxy", "chk_http_port", "chk_https_port", "chk_smtp_port"]
    sshd = parsed.first("vrrp_script")
    assert sshd.first("script").words == ("killall -0 sshd",)
    assert keepalived.command_argv(sshd.first("script")) == ("killall", "-0", "sshd")
    assert sshd.word("weight") == "-4"
    http = next(s for s in parsed.all("vrrp_script") if s.name == "chk_http_port")
    assert http.first("script").words == ("</dev/tcp/127.0.0.1/80",)
    assert names(parsed, "vrrp_instance") == [f"VI_{n}" for n in range(1, 10)]
    assert lines(parsed.first("vrrp_instance").first("track_script")) == [
        ("chk_sshd", ()), ("chk_haproxy", ("weight", "2")), ("chk_http_port", ()), ("chk_https_port", ()),
        ("chk_smtp_port", ())]
    scripts = keepalived.parse(KEEPALIVED / "keepalived.conf.vrrp.scripts", config_id="lb1")
    notify = scripts.first("vrrp_instance").first("notify_backup")
    assert notify.words == ("/usr/local/bin/vrrp.sh  BACKUP   VI_1",)
    assert keepalived.command_argv(notify) == ("/usr/local/bin/vrrp.sh", "BACKUP", "VI_1")
    assert lines(scripts.first("vrrp_sync_group").first("group")) == [("VI_2", ()), ("VI_3", ())]
    misc = keepalived.parse(KEEPALIVED / "keepalived.conf.misc_check_arg", config_id="lb1")
    path = misc.first("virtual_server").first("real_server").first("MISC_CHECK").first("misc_path")
    assert keepalived.command_argv(path) == ("/usr/local/bin/script.sh", "arg1", "arg2")


def test_command_argv_reads_quotes_and_escapes_as_keepalived():
    def argv(word: str) -> tuple[str, ...]:
        return keepalived.command_argv(Statement("script", (word,), Place(LB, 1)))
    assert argv("bash -c '</dev/tcp/127.0.0.1/80'") == ("bash", "-c", "</dev/tcp/127.0.0.1/80")
    assert argv('a"b c"d \'e "f\' g\\ h \\x41\\101\\t') == ("ab cd", 'e "f', "g h", "AA\t")
    assert argv("unterminated 'quote") == ()


def test_keepalived_lvs_blocks_nest():
    parsed = keepalived.parse(KEEPALIVED / "keepalived.conf.SSL_GET", config_id="lb1")
    assert [s.words for s in parsed.all("virtual_server")] == [("192.168.200.100", "443"), ("192.168.200.100", "80")]
    check = parsed.first("virtual_server").first("real_server").first("SSL_GET")
    assert [lines(url) for url in check.all("url")] == [
        [("path", ("/",)), ("digest", ("ff20ad2481f97b1754ef3e12ecd3a9cc",))],
        [("path", ("/mrtg/",)), ("digest", ("9b3a0c85a887a256d6939da88aabd8cd",))]]
    assert check.word("connect_timeout") == "3" and check.place.line == 39
    group = keepalived.parse(KEEPALIVED / "keepalived.conf.virtual_server_group", config_id="lb1")
    assert group.first("virtual_server").words == ("group", "VSG_1")
    assert lines(group.first("virtual_server_group"))[3:] == [("192.168.200.3-10", ("80",)), ("fwmark", ("1",)),
                                                               ("fwmark", ("2",))]
    quorum = keepalived.parse(KEEPALIVED / "keepalived.conf.quorum", config_id="lb1").first("virtual_server")
    assert [s.words for s in quorum.all("real_server")] == [(f"10.0.0.{n}", "8080") for n in range(1, 11)]
    status = keepalived.parse(KEEPALIVED / "keepalived.conf.status_code", config_id="lb1")
    url = status.first("virtual_server").first("real_server").first("SSL_GET").first("url")
    assert url.first("status_code").words == ("200-299", "400-499", "503", "505")
    smtp = keepalived.parse(KEEPALIVED / "keepalived.conf.SMTP_CHECK", config_id="lb1").first("virtual_server")
    second = list(smtp.all("real_server"))[1].first("SMTP_CHECK")
    assert [host.word("connect_ip") for host in second.all("host")] == ["172.16.1.11", "192.168.155.10", "64.233.167.99"]
    assert second.word("helo_name") == "foo.bar.com"


def test_keepalived_sync_groups_without_a_group_block_keep_their_lines():
    parsed = keepalived.parse(KEEPALIVED / "keepalived.conf.vrrp.lvs_syncd", config_id="lb1")
    assert lines(parsed.first("vrrp_sync_group")) == [("VI_2", ()), ("VI_3", ())]
    synced = keepalived.parse(KEEPALIVED / "keepalived.conf.vrrp.sync", config_id="lb1")
    assert names(synced, "vrrp_sync_group") == ["G1", "G2"]
    assert lines(list(synced.all("vrrp_sync_group"))[1].first("group")) == [("VI_3", ()), ("VI_4", ())]


# keepalived: the synthetic file, for what the samples lack


def test_keepalived_includes_are_globs_relative_to_the_including_file():
    parsed = keepalived.parse(LB, config_id="lb1")
    directory = LB.parent
    assert parsed.files == (LB, directory / "conf.d/scripts.conf", directory / "conf.d/extra/garp.conf")
    assert [(s.keyword, s.place.file.name, s.place.line) for s in parsed.statements] == [
        ("global_defs", "lb.conf", 13), ("vrrp_script", "scripts.conf", 2), ("global_defs", "garp.conf", 2),
        ("vrrp_instance", "lb.conf", 22)]
    script = parsed.first("vrrp_script")
    assert script.first("script").place == Place(directory / "conf.d/scripts.conf", 3)
    assert keepalived.command_argv(script.first("script")) == ("/usr/bin/pgrep", "-x", "haproxy")


def test_keepalived_parameters_conditionals_and_braces():
    lb1, lb2 = (keepalived.parse(LB, config_id=host) for host in ("lb1", "lb2"))
    instance = lb1.first("vrrp_instance")
    assert instance.place.line == 22  # its "{" is on the next line
    assert [(child.keyword, child.words, child.place.line) for child in instance.children[:4]] == [
        ("state", ("MASTER",), 24), ("interface", ("eth1",), 25), ("virtual_router_id", ("51",), 26),
        ("priority", ("150",), 27)]
    assert lines(instance.first("virtual_ipaddress")) == [("10.0.0.100/24", ("dev", "eth1", "label", "eth1:1"))]
    assert [(c.keyword, c.place.line) for c in instance.first("unicast_peer").children] == [("10.0.0.2", 35),
                                                                                          ("10.0.0.3", 35)]
    assert lines(instance.first("track_script")) == [("chk_haproxy", ("weight", "20"))]
    assert instance.first("authentication").word("auth_pass") == "pa ss#1!"
    assert instance.first("notify_master").words == ("/usr/bin/logger -t keepalived 'VI_1 is master'",)
    assert lb1.first("global_defs").word("router_id") == "lb1"
    assert instance.first("nopreempt") is None
    other = lb2.first("vrrp_instance")
    assert (other.word("state"), other.word("priority"), other.first("nopreempt").place.line) == ("BACKUP", "100", 39)
    assert lb2.first("global_defs").word("router_id") == "lb2"


def test_keepalived_notes_name_what_was_not_read_and_never_a_secret():
    parsed = keepalived.parse(LB, config_id="lb1")
    assert [str(note) for note in parsed.notes] == [
        f"{LB}:17: parameter $MAIL_FROM is not defined: keepalived leaves it as written",
        f"{LB}:8: lines @lb1 read for config id 'lb1' (as given): {LB}:8, 10",
        f"{LB}:9: lines @lb2 skipped for config id 'lb1' (as given): {LB}:9, 39",
        f"{LB}:11: lines @^lb1 skipped for config id 'lb1' (as given): {LB}:11"]
    assert parsed.first("global_defs").word("notification_email_from") == "$MAIL_FROM"


def test_keepalived_broken_files_give_notes(tmp_path: Path):
    (tmp_path / "a.conf").write_text("include b.conf\nvrrp_instance VI_1 {\n  auth_pass \"secret99\n")
    (tmp_path / "b.conf").write_text("include a.conf\ninclude missing/*.conf\n}\nfoo ${_PWD} ~x\n$X=$X\nbar $X\n")
    parsed = keepalived.parse(tmp_path / "a.conf", config_id="lb1")
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    assert [str(note) for note in parsed.notes] == [
        f"{b}:1: include a.conf: {a} is already being read: an include loop (keepalived has no include depth limit "
        "and would read it again until it runs out of file descriptors); not read",
        f"{b}:2: include missing/*.conf: no file matches (keepalived reads on without it; includem, includea or -e "
        "make it an error)",
        f"{b}:6: parameter substitution does not end (a parameter refers to itself): keepalived would never finish "
        "reading this line; line not read",
        f"{a}:3: unterminated double quote (keepalived: Unterminated quote)",
        f"{b}:3: '}}' that closes no block (keepalived: Extra '}}' found)",
        f"{a}:3: unmatched double quote: keepalived drops the words from it on",
        f"{a}:2: the vrrp_instance block opened here is not closed: a '}}' is missing"]
    assert not any("secret99" in note.message for note in parsed.notes)
    assert [(s.keyword, s.words) for s in parsed.statements] == [("foo", (str(tmp_path), "~x")),
                                                                 ("vrrp_instance", ("VI_1",))]
    assert parsed.statements[1].children[0].words == ()


def test_keepalived_multiline_parameters_and_escapes(tmp_path: Path):
    path = tmp_path / "k.conf"
    path.write_text("$VIPS=10.0.0.1 \\\n  10.0.0.2 dev eth0 \\\n\n$P=\"quoted # kept\"\n"
                    "virtual_ipaddress {\n  $VIPS\n}\nnotify $P \\# not a comment ! a comment\n"
                    "x ${P}/y $P/z\n")
    parsed = keepalived.parse(path, config_id="lb1")
    assert lines(parsed.first("virtual_ipaddress")) == [("10.0.0.1", ()), ("10.0.0.2", ("dev", "eth0"))]
    # keepalived decomments a line again after substituting: the \# it unescaped then starts a comment
    assert parsed.first("notify").words == ("quoted # kept",)
    assert parsed.first("x").words == ("quoted # kept", "/y", "$P/z")  # $P/ is no reference for keepalived


def test_keepalived_include_braces_and_resolve(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "sub" / f"{name}.conf").write_text(f"name {name}\n")
    (tmp_path / "sub" / "x.conf").write_text("name x\n")
    (tmp_path / "sub" / "x.conf").chmod(0o755)
    (tmp_path / "k.conf").write_text("include sub/{c,a}.conf\ninclude sub/x.conf\ninclude /etc/keepalived/b.conf\n"
                                     "include /elsewhere.conf\n")
    parsed = keepalived.parse(tmp_path / "k.conf", config_id="lb1",
                              resolve=lambda host: tmp_path / "sub" / Path(host).name if host.startswith("/etc/") else None)
    assert [s.words for s in parsed.statements] == [("c",), ("a",), ("b",)]
    assert [note.message for note in parsed.notes] == [
        f"include sub/x.conf: {tmp_path / 'sub/x.conf'} is not a regular non-executable file; not read",
        "include /elsewhere.conf: that path of the host is not among its copied files; not read"]


def test_keepalived_refuses_what_is_not_a_readable_file(tmp_path: Path):
    with pytest.raises(ChaoslabError, match="does not exist: pass the path of a keepalived.conf"):
        keepalived.parse(tmp_path / "missing.conf")
    with pytest.raises(ChaoslabError, match="is a directory"):
        keepalived.parse(tmp_path)


# haproxy: every example


@pytest.mark.parametrize("path", HAPROXY_EXAMPLES, ids=lambda path: path.name)
def test_every_haproxy_example_parses_without_a_note_and_each_statement_is_on_its_line(path: Path):
    parsed = haproxy.parse(path)
    assert parsed.notes == () and parsed.files == (path,)
    for statement in walk(parsed.statements):
        assert line_of(statement).lstrip().startswith(statement.keyword), statement.place


SECTIONS = {
    "basic-config-edge.cfg": [("global", None, 9), ("defaults", "http", 43), ("frontend", "stats", 55),
                              ("frontend", "pub1", 67), ("cache", "cache", 96), ("backend", "app1", 103)],
    "content-sw-sample.cfg": [("global", None, 10), ("frontend", "public", 20), ("backend", "static", 37),
                              ("backend", "dynamic", 50)],
    "haproxy.cfg": [("global", None, 1), ("defaults", None, 20)],
    "option-http_proxy.cfg": [("global", None, 5), ("frontend", "test-proxy", 14), ("backend", "test-proxy-srv", 36)],
    "quick-test.cfg": [("global", None, 4), ("defaults", None, 13), ("listen", "p", 20)],
    "socks4.cfg": [("global", None, 1), ("defaults", None, 6), ("listen", "SMTP-20025", 15), ("listen", "SSL-20080", 27),
                   ("listen", "stats", 40)],
    "transparent_proxy.cfg": [("global", None, 8), ("defaults", None, 9), ("frontend", "MyFrontend", 14),
                              ("backend", "TransparentBack_http", 18)],
    "wurfl-example.cfg": [("global", None, 7), ("defaults", None, 24), ("frontend", "TheFrontend", 30),
                          ("backend", "TheBackend", 40)],
}


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_haproxy_sections(name: str):
    parsed = haproxy.parse(HAPROXY / name)
    assert [(s.keyword, s.name, s.place.line) for s in parsed.statements] == SECTIONS[name]


def test_haproxy_server_lines_and_words():
    edge = haproxy.parse(HAPROXY / "basic-config-edge.cfg")
    app = edge.statements[-1]
    assert app.first("server").words == (
        "srv1", "192.0.2.1:80", "cookie", "s1", "maxconn", "100", "check", "inter", "1s")
    assert app.first("server").place.line == 121
    assert app.first("http-check").words == ("send", "meth", "GET", "uri", "/", "ver", "HTTP/1.1", "hdr", "host",
                                             "svc1.example.com")
    pub = edge.statements[3]
    assert pub.first("http-after-response").words == ("set-header", "Strict-Transport-Security", "max-age=31536000")
    assert pub.first("option").words == ("socket-stats",)  # "# provide per-bind line stats" is a comment
    assert pub.first("http-request").words == ("redirect", "scheme", "https", "code", "301", "if", "!{", "ssl_fc", "}")
    assert edge.statements[1].first("timeout").words == ("client", "1m")
    socks = haproxy.parse(HAPROXY / "socks4.cfg")
    assert socks.statements[-1].first("stats").words == ("enable",)
    assert [s.words for s in socks.statements[-1].all("stats")][2] == ("realm", "HAProxy Statistics")
    assert list(socks.statements[2].all("server"))[1].words == (
        "SMTPS2_Via_SocksProxy1", "192.0.2.2:25", "socks4", "127.0.0.1:1080", "check-via-socks4", "check", "inter",
        "30000", "fastinter", "1000", "backup")
    content = haproxy.parse(HAPROXY / "content-sw-sample.cfg")
    assert content.statements[1].first("use_backend").words == ("static", "if", "{", "hdr_beg(host)", "-i", "img", "}")
    assert content.statements[3].first("fullconn").words == ("4000",)
    debian = haproxy.parse(HAPROXY / "haproxy.cfg")
    assert debian.statements[0].first("stats").words == ("socket", "/run/haproxy/admin.sock", "mode", "660", "level",
                                                         "admin")
    assert debian.statements[1].first("errorfile").words == ("400", "/etc/haproxy/errors/400.http")
    proxy = haproxy.parse(HAPROXY / "option-http_proxy.cfg")
    assert proxy.statements[2].first("server").words == ("next-hop", "0.0.0.0")
    assert proxy.statements[0].first("ulimit-n").words == ("16384",)


# haproxy: the synthetic files


def test_haproxy_environment_quotes_escapes_and_conditions():
    environment = {"PORT": "8080", "ROLE": "standby", "NODE": "lb1", "BLOCKED": "192.0.2.1 192.0.2.2", "THREADS": "2"}
    parsed = haproxy.parse(ENVIRONMENT, environment)
    glob, _, web, pool = parsed.statements
    assert glob.first("nbthread").words == ("2",)
    assert [(s.keyword, s.words) for s in web.children] == [
        ("bind", ("127.0.0.1:8080",)),
        ("http-request", ("set-header", "X-Served-By", "lb1")),
        ("http-request", ("return", "status", "200", "content-type", "text/plain", "string", "${NOT_EXPANDED} $HOME",
                          "if", "{", "path", "/literal", "}")),
        ("http-request", ("set-header", "X-Quoted", 'say "hi"')),
        ("http-request", ("set-header", "X-Escaped", "a b#c")),
        ("http-request", ("deny", "if", "{", "src", "192.0.2.1", "192.0.2.2", "}")),
        ("default_backend", ("pool",))]
    assert [(s.keyword, s.words, s.place.line) for s in pool.children] == [
        ("balance", ("roundrobin",), 25), ("server", ("web2", "10.0.0.12:80", "check", "backup"), 29),
        ("option", ("httpchk", "GET", "/health"), 34)]
    assert [str(note) for note in parsed.notes] == [
        f"{ENVIRONMENT}:26: the lines up to the next .elif, .else or .endif are not read: its condition is false with "
        "the given environment",
        f"{ENVIRONMENT}:30: the lines up to the next .elif, .else or .endif are not read: an earlier branch is taken",
        f"{ENVIRONMENT}:33: .if depends on the HAProxy binary (feature, version or OpenSSL): its lines are kept, and "
        "those of the other branches too"]


def test_haproxy_environment_defaults_to_none_not_this_process():
    parsed = haproxy.parse(ENVIRONMENT)
    web, pool = parsed.statements[2], parsed.statements[3]
    assert parsed.statements[0].first("nbthread") is None
    assert web.first("bind").words == ("127.0.0.1:",)  # ${VIP-127.0.0.1} takes its default
    assert web.first("http-request").words == ("set-header", "X-Served-By")
    assert [s.words for s in pool.all("server")] == [("web3", "10.0.0.13:80", "check")]
    messages = [(note.place.line, note.message) for note in parsed.notes]
    assert (16, "environment variable PORT is not defined: HAProxy expands it to nothing") in messages
    assert (21, "an empty word (\"\" or a variable that expands to nothing) ends the line for HAProxy 2.6: the 1 "
                "word(s) after it are ignored") in messages
    assert "HOME" not in str(messages)  # unquoted and single-quoted $ are text


def test_haproxy_missing_final_newline():
    path = SYNTHETIC / "haproxy" / "no-final-newline.cfg"
    parsed = haproxy.parse(path)
    assert [str(note) for note in parsed.notes] == [
        f"{path}:11: no newline at the end of the file: HAProxy 2.6 refuses it (\"Missing LF on last line, file "
        "might have been truncated at position 35\")"]
    assert parsed.statements[1].first("server").words == ("web1", "10.0.0.11:80", "check")


def test_haproxy_1_5_frontend_line_is_read_as_written():
    parsed = haproxy.parse(SYNTHETIC / "haproxy" / "frontend-1.5-style.cfg")
    assert [(s.keyword, s.words, s.place.line) for s in parsed.statements] == [
        ("defaults", (), 3), ("frontend", ("main", "*:80"), 9), ("backend", ("web",), 12)]


@pytest.mark.parametrize("condition, environment, expected", [
    ("1", {}, True), ("0x0", {}, False), ("010", {}, True), ("!0 && 1", {}, True), ("0 || !1", {}, False),
    ("defined(A)", {"A": ""}, True), ("!defined(A)", {}, True), ('streq("$A",x)', {"A": "x"}, True),
    ("strneq(a,b) && (0 || defined(B))", {"B": "1"}, True), ("version_atleast(2.4)", {}, None),
    ("version_atleast(2.4) && 0", {}, False), ("feature(OPENSSL) || 1", {}, True), ("", {}, False),
])
def test_haproxy_conditions(tmp_path: Path, condition: str, environment: dict[str, str], expected: bool | None):
    path = tmp_path / "h.cfg"
    path.write_text(f"global\n.if {condition}\n    yes\n.else\n    no\n.endif\n")
    parsed = haproxy.parse(path, environment)
    read = [s.keyword for s in parsed.statements[0].children]
    assert read == {True: ["yes"], False: ["no"], None: ["yes", "no"]}[expected]


def test_haproxy_refused_lines_and_stops(tmp_path: Path):
    path = tmp_path / "h.cfg"
    path.write_text("maxconn 1\nglobal\n  log 'unterminated\n  user \"$1\"\n  x \\xZZ\n  \"\" after\n"
                    "[scope]\n.notice \"hello\"\n.if streq(a)\n  never\n.endif\n")
    parsed = haproxy.parse(path)
    assert [note.message for note in parsed.notes] == [
        "maxconn before any section: HAProxy 2.6 refuses it (unknown keyword 'maxconn' out of section)",
        "HAProxy 2.6 rejects the configuration: unmatched quote in this line (not read)",
        "HAProxy 2.6 rejects the configuration: forbidden first char in environment variable name in this line (not "
        "read)",
        "HAProxy 2.6 rejects the configuration: truncated or invalid hexadecimal sequence in this line (not read)",
        "the line starts with an empty word: HAProxy 2.6 takes it for an empty line",
        "a [scope] line (HAProxy's cfg_parse_scope): not read here",
        "HAProxy 2.6 logs: .notice 'hello'",
        "HAProxy 2.6 stops reading the file here: missing arguments (got 1/2) of a predicate in '.if'; the lines "
        "after it are not read"]
    assert [(s.keyword, s.children) for s in parsed.statements] == [("global", ())]


def test_haproxy_refuses_what_is_not_a_readable_file(tmp_path: Path):
    with pytest.raises(ChaoslabError, match="does not exist: pass the path of a haproxy.cfg"):
        haproxy.parse(tmp_path / "missing.cfg")
    with pytest.raises(ChaoslabError, match="is a directory"):
        haproxy.parse(tmp_path)
