"""deploy/ checked offline against the kelian it deploys (docs/deploy.md).

Every metric the Grafana dashboard and the alert rules query must be one a real kelian serves on
/metrics, with the label values they match on; the Prometheus config, the rules and the rules' unit
tests pass promtool (Debian's prometheus package); the image runs a command the CLI has, and every
KELIAN_* variable the image, the systemd unit and the docs name is one the configuration reads; the
image's health check passes against a live server; the kernel settings allow the socket buffers
kelian asks for. The image itself is not built here: that needs a registry.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cluster_helpers import front_config, serve_node
from helpers import free_tcp_port, require_system
from kelian_server import API_KEY, API_SECRET, Server, running_server
from prometheus_client.parser import text_string_to_metric_families

from sfu.media_port import SOCKET_BUFFER
from signaling.cli import build_parser
from signaling.config import Config

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "kelian.json"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "kelian.service"
SYSCTL = DEPLOY / "sysctl" / "99-kelian.conf"
DOCS = REPO / "docs" / "deploy.md"
CREDENTIALS = {"KELIAN_API_KEY": "APIdeploytest", "KELIAN_API_SECRET": "deploy-test-secret-0123456789abcdef"}
METRICS_TOKEN = "deploy-test-metrics-token"

# Series Prometheus writes itself for every target, not read from /metrics.
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
# Labels Prometheus attaches to every series of a target.
TARGET_LABELS = {"job", "instance"}


# -- what a real kelian exports ---------------------------------------------------------------------


@dataclass
class Exposition:
    """The series names and label values of a /metrics text, as Prometheus stores them."""

    names: set[str] = field(default_factory=set)  # every series name a query may use
    labels: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # series -> label -> values
    silent: set[str] = field(default_factory=set)  # series of families with no sample yet

    @classmethod
    def parse(cls, text: str) -> Exposition:
        exposition = cls()
        for family in text_string_to_metric_families(text):
            # the names the text format gives each type; a family may have no sample yet (labelled
            # counters before their first increment), and still has these names
            names = {
                "counter": [family.name + "_total"],
                "histogram": [family.name + s for s in ("_bucket", "_sum", "_count")],
                "gaugehistogram": [family.name + s for s in ("_bucket", "_gsum", "_gcount")],
                "summary": [family.name, family.name + "_sum", family.name + "_count"],
                "info": [family.name + "_info"],
            }.get(family.type, [family.name])
            exposition.names.update(names)
            if not family.samples:
                exposition.silent.update(names)
            for sample in family.samples:
                exposition.names.add(sample.name)
                series = exposition.labels.setdefault(sample.name, {})
                for label, value in sample.labels.items():
                    series.setdefault(label, set()).add(value)
        return exposition


@dataclass
class Scrape:
    exposition: Exposition
    status_without_token: int
    healthz: dict[str, Any]
    health_check: int  # deploy/healthcheck.py's exit status against it


async def _scrape(url: str, path: str, authorization: str) -> Scrape:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + path) as response:
            refused = response.status
        async with http.get(url + path, headers={"Authorization": authorization}) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        async with http.get(url + "/healthz") as response:
            healthz = await response.json()
    status, _ = await health(int(url.rsplit(":", 1)[1]), "127.0.0.1")
    return Scrape(Exposition.parse(text), refused, healthz, status)


async def _scrape_both(path: str, authorization: str, directory: Path) -> dict[str, Scrape]:
    scrapes = {}
    async with running_server("127.0.0.1", metrics_token=METRICS_TOKEN) as server:
        scrapes["one process"] = await _scrape(server.url, path, authorization)
    from cluster import front  # here: only the tests that scrape need the workers' front

    config = front_config(directory, metrics_token=METRICS_TOKEN)
    runner, pool = await front.start(config, 2)
    try:
        scrapes["--workers 2"] = await _scrape(f"http://127.0.0.1:{config.http_port}", path, authorization)
    finally:
        await front.stop(runner, pool)
    return scrapes


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scrape]:
    """/metrics of a real kelian, one process and a front with two workers, fetched the way
    deploy/prometheus/prometheus.yml has Prometheus fetch it."""
    job = scrape_job()
    authorization = f"{job['authorization_type']} {METRICS_TOKEN}"
    return asyncio.run(_scrape_both(job["metrics_path"], authorization, tmp_path_factory.mktemp("front")))


# -- PromQL: which series a query selects ----------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)[a-zA-Z]*)
    |(?P<space>\s+)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"} | _GROUPING


@dataclass
class Selector:
    name: str
    matchers: list[tuple[str, str, str]]  # label, operator, value


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables in a dashboard query replaced by what a query with them may look like."""
    expr = re.sub(r"\$__(?:rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".+", expr)


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression: metric names, not functions, keywords or labels."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position:]!r} in {expr!r}")
        position = match.end()
        if match.lastgroup != "space":
            assert match.lastgroup is not None
            tokens.append((match.lastgroup, match.group()))
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING and following == "(":
            i = _closing(tokens, i + 1, "(", ")") + 1  # by (instance, job): label names
            continue
        if kind == "ident" and (following in ("(", "by", "without") or text.lower() in _KEYWORDS):
            i += 1  # a function, an aggregation (sum by (...) (...)) or a keyword
            continue
        if (kind == "ident" and following == "{") or text == "{":
            brace = i + 1 if kind == "ident" else i
            end = _closing(tokens, brace, "{", "}")
            matchers = _matchers(tokens[brace + 1 : end])
            name = text if kind == "ident" else next(v for label, op, v in matchers if label == "__name__")
            found.append(Selector(name, [m for m in matchers if m[0] != "__name__"]))
            i = end + 1
            continue
        if kind == "ident":
            found.append(Selector(text, []))
        i += 1
    return found


def _closing(tokens: list[tuple[str, str]], start: int, opening: str, closing: str) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        depth += {opening: 1, closing: -1}.get(tokens[index][1], 0)
        if depth == 0:
            return index
    raise ValueError(f"no {closing} after {opening}")


def _matchers(tokens: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    matchers = []
    for index in range(0, len(tokens), 4):  # label op "value" [,]
        label, op, (kind, value) = tokens[index][1], tokens[index + 1][1], tokens[index + 2]
        assert kind == "string", tokens
        matchers.append((label, op, json.loads(value) if value[0] == '"' else value[1:-1]))
    return matchers


def test_selectors_are_read_as_promql_reads_them() -> None:
    """The reader above is what the metric checks rest on: it must find names, and only names."""
    expr = (
        'sum by (instance, reason) (rate(kelian_refused_total{job="kelian",reason=~"a|b"}[5m])) * 60'
        ' > bool 1 and on (job) up offset 5m or absent({__name__="x_total"}) / ignoring(state) y'
    )
    assert [(s.name, s.matchers) for s in selectors(expr)] == [
        ("kelian_refused_total", [("job", "=", "kelian"), ("reason", "=~", "a|b")]),
        ("up", []),
        ("x_total", []),
        ("y", []),
    ]
    assert [s.name for s in selectors(grafana_to_promql('rate(a{i=~"$instance"}[$__rate_interval])'))] == [
        "a"
    ]


# -- the files' queries ------------------------------------------------------------------------------


@dataclass
class Alert:
    name: str
    expr: str


def alert_rules() -> list[Alert]:
    """The alerting rules of alerts.yml, read for their names and expressions (no YAML library in the
    virtualenv: the file's own layout, each `- alert:` with an `expr:` inline or as a block scalar)."""
    rules: list[Alert] = []
    lines = (PROMETHEUS / "alerts.yml").read_text().splitlines()
    name = None
    for index, line in enumerate(lines):
        if match := re.match(r"\s*- alert: (\S+)$", line):
            name = match.group(1)
        elif (match := re.match(r"(\s*)expr: ?(.*)$", line)) and name is not None:
            indent, value = len(match.group(1)), match.group(2).strip()
            if value in (">-", ">", "|", "|-"):
                block = []
                for following in lines[index + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = " ".join(part for part in block if part)
            rules.append(Alert(name, value))
            name = None
    return rules


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # the panels of a collapsed row


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable; label_values(m, l) selects m."""
    queries = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", grafana_to_promql(target["expr"])))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            if match := re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip()):
                query = match.group(1)
            queries.append((f"variable {variable['name']}", grafana_to_promql(query)))
    return queries


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + [(f"alert {rule.name}", rule.expr) for rule in alert_rules()]


def source_literals() -> set[str]:
    """Every word-like string literal in kelian's packages: where label values such as refusal reasons
    are spelled before their first sample exists."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    literals: set[str] = set()
    for pattern in packages["include"]:
        for path in REPO.glob(pattern.rstrip("*") + "/**/*.py"):
            literals.update(re.findall(r"""["']([A-Za-z0-9_]+)["']""", path.read_text()))
    return literals


def test_every_query_selects_a_series_kelian_exports(scrapes: dict[str, Scrape]) -> None:
    queries = all_queries()
    assert len([q for q in queries if q[0].startswith("alert ")]) >= 20
    for mode, scrape in scrapes.items():
        exported = scrape.exposition.names | PROMETHEUS_SERIES
        missing = []
        for where, expr in queries:
            found = selectors(expr)
            assert found, f"{where}: no series in {expr!r}"
            missing += [f"{where}: {s.name}" for s in found if s.name not in exported]
        assert not missing, f"{mode}: not on kelian's /metrics: {missing}; it exports {sorted(exported)}"


def test_label_values_in_queries_are_ones_kelian_uses(scrapes: dict[str, Scrape]) -> None:
    """A matcher on a label value that never occurs selects nothing, silently: state="conected"."""
    literals = source_literals()
    for mode, scrape in scrapes.items():
        exposition = scrape.exposition
        wrong = []
        for where, expr in all_queries():
            for selector in selectors(expr):
                for label, op, value in selector.matchers:
                    if label in TARGET_LABELS or op not in ("=", "=~"):
                        continue
                    if op == "=~" and not re.fullmatch(r"\w+(\|\w+)*", value):
                        continue  # a real pattern: nothing to compare
                    for one in value.split("|") if op == "=~" else [value]:
                        if selector.name in exposition.silent:  # no sample yet: as the code spells it
                            known = one in literals and label in literals
                        else:
                            known = one in exposition.labels.get(selector.name, {}).get(label, set())
                        if not known:
                            wrong.append(f"{where}: {selector.name}{{{label}{op}{one!r}}}")
        assert not wrong, f"{mode}: label values kelian never exports: {wrong}"


def test_with_workers_each_process_is_labelled(scrapes: dict[str, Scrape]) -> None:
    """The dashboard shows per-process figures by their worker label, and the alerts name it."""
    labels = scrapes["--workers 2"].exposition.labels["process_cpu_seconds_total"]
    assert labels["worker"] == {"front", "0", "1"}
    assert "worker" not in scrapes["one process"].exposition.labels["process_cpu_seconds_total"]


def test_alerts_select_the_job_prometheus_scrapes() -> None:
    job = scrape_job()["job_name"]
    for rule in alert_rules():
        jobs = {v for s in selectors(rule.expr) for label, op, v in s.matchers if label == "job"}
        assert jobs == {job}, f"{rule.name} selects job {jobs}, the scrape config has {job!r}"


def test_scrape_config_matches_what_kelian_serves(scrapes: dict[str, Scrape]) -> None:
    """Without the token /metrics refuses; with it as prometheus.yml sends it, it answers (the fixture);
    the image's health check passes."""
    job = scrape_job()
    assert job["metrics_path"] == "/metrics"
    assert job["targets"] == [f"127.0.0.1:{Config(api_key='k', api_secret='s').http_port}"]
    for mode, scrape in scrapes.items():
        assert scrape.status_without_token == 401, mode
        assert scrape.healthz["status"] == "ok" and scrape.health_check == 0, mode


def scrape_job() -> dict[str, Any]:
    """The kelian job of prometheus.yml, read from the file's own layout (no YAML library here)."""
    text = (PROMETHEUS / "prometheus.yml").read_text()
    code = "\n".join(line.split("#", 1)[0].rstrip() for line in text.splitlines())

    def one(pattern: str) -> str:
        found = re.findall(pattern, code, re.MULTILINE)
        assert len(found) == 1, f"{pattern}: {found}"
        return str(found[0])

    return {
        "job_name": one(r"^\s*- job_name: (\S+)$"),
        "metrics_path": one(r"^\s*metrics_path: (\S+)$"),
        "authorization_type": one(r"^\s*type: (\S+)$"),
        "credentials_file": one(r"^\s*credentials_file: (\S+)$"),
        "targets": json.loads(one(r"^\s*- targets: (\[.*\])$")),
    }


# -- promtool -------------------------------------------------------------------------------------------


def promtool(*args: str, cwd: Path) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        require_system("promtool", "promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    """As installed: the config, its rules and the token file side by side."""
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / scrape_job()["credentials_file"]).write_text(METRICS_TOKEN + "\n")
    output = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_alert_rules_are_valid_and_their_tests_pass() -> None:
    output = promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output  # none missed by alert_rules()
    output = promtool("test", "rules", "alerts.test.yml", cwd=PROMETHEUS)
    assert "SUCCESS" in output, output


def test_every_alert_has_a_test_that_fires_it() -> None:
    text = (PROMETHEUS / "alerts.test.yml").read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", text))
    assert fired == {rule.name for rule in alert_rules()}


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool checks PromQL in rule files: each dashboard query becomes a recording rule."""
    rules = [
        {"record": f"kelian:dashboard:query{index}", "expr": expr}
        for index, (_, expr) in enumerate(dashboard_queries())
    ]
    (tmp_path / "dashboard.rules.yml").write_text(
        json.dumps({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    output = promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in output, output


# -- the dashboard's structure ----------------------------------------------------------------------------


def test_dashboard_is_an_importable_model() -> None:
    model = dashboard()
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert {"job", "instance"} <= set(variables)
    assert model["uid"] and model["title"] and model["id"] is None  # importable anywhere
    ids, taken = set(), set()
    for panel in dashboard_panels():
        assert panel["id"] not in ids, f"panel id {panel['id']} twice"
        ids.add(panel["id"])
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert 'job="$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"], target[
                "expr"
            ]


# -- the image ---------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments left out."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile() if instruction == keyword]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in dockerfile_args("ENV"):
        for word in shlex.split(arguments):
            name, _, value = word.partition("=")
            env[name] = value
    return env


class RecordingEnv(dict[str, str]):
    """An environment that notes every variable the configuration asks it for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def config_variables() -> set[str]:
    env = RecordingEnv(CREDENTIALS)
    Config.load(None, env)
    return env.asked


def load_config(variables: dict[str, str]) -> Config:
    """The Config kelian builds from these variables (and credentials), checking each is one it reads."""
    unknown = {name for name in variables if name.startswith("KELIAN_")} - config_variables()
    assert not unknown, f"variables kelian does not read: {unknown}"
    return Config.load(
        None, {name: v for name, v in variables.items() if name.startswith("KELIAN_")} | CREDENTIALS
    )


def test_image_runs_kelian_serve_on_python_311_slim() -> None:
    args = {name: default for name, _, default in (a.partition("=") for a in dockerfile_args("ARG"))}
    for image in dockerfile_args("FROM"):
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.split(" AS ")[0])
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    command = json.loads(dockerfile_args("ENTRYPOINT")[-1]) + json.loads(dockerfile_args("CMD")[-1])
    assert command[0] == "kelian"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kelian"] == "signaling.cli:main"
    assert build_parser().parse_args(command[1:]).command == "serve"
    script = Path(sys.executable).parent / "kelian"
    runner = [str(script)] if script.exists() else [sys.executable, "-m", "signaling"]
    result = subprocess.run(
        [*runner, *command[1:], "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and "usage: kelian serve" in result.stdout, result.stderr


def test_image_environment_is_kelian_configuration() -> None:
    env = image_env()
    config = load_config(env)
    assert config.http_host == "0.0.0.0" and config.media_host == "0.0.0.0"
    assert not config.dev_credentials
    exposed = set(" ".join(dockerfile_args("EXPOSE")).split())
    assert exposed == {f"{config.http_port}/tcp", f"{config.media_port}/udp"}
    volumes = json.loads(dockerfile_args("VOLUME")[-1])
    for path in (config.database, config.recordings, config.library):
        assert any(Path(path).is_relative_to(volume) for volume in volumes), f"{path} is not on a volume"
    with pytest.raises(ValueError, match="KELIAN_API_KEY"):  # listening beyond loopback: no dev mode
        Config.load(None, {k: v for k, v in env.items() if k.startswith("KELIAN_")})


def test_image_runs_as_a_user_of_its_own() -> None:
    user = dockerfile_args("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert f"--uid {user}" in " ".join(dockerfile_args("RUN"))


def test_image_is_built_from_the_package_only() -> None:
    """.dockerignore lets in what `pip install .` needs, and the health check."""
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= allowed, f"packages left out of the image: {packages - allowed}"
    others = {"pyproject.toml", project["project"]["readme"], "deploy/healthcheck.py", "deploy/drain.py"}
    assert others <= allowed
    packages_here = {path.name for path in REPO.iterdir() if (path / "__init__.py").exists()}
    assert allowed - packages - others <= packages_here, "let in, but not a package"
    assert "*" in (REPO / ".dockerignore").read_text().splitlines()


def test_image_health_check_is_the_script_it_copies() -> None:
    healthcheck = dockerfile_args("HEALTHCHECK")[-1]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python" and command[1].endswith("/healthcheck.py")
    assert f"deploy/healthcheck.py {command[1]}" in dockerfile_args("COPY")


def health_module() -> Any:
    spec = importlib.util.spec_from_file_location("kelian_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_health_check_asks_where_kelian_listens() -> None:
    url = health_module().url
    assert url({}) == "http://127.0.0.1:8700/healthz"
    assert url({"KELIAN_HTTP_HOST": "0.0.0.0", "KELIAN_HTTP_PORT": "9000"}) == "http://127.0.0.1:9000/healthz"
    assert url({"KELIAN_HTTP_HOST": "::"}) == "http://[::1]:8700/healthz"
    assert url({"KELIAN_HTTP_HOST": "10.0.0.5"}) == "http://10.0.0.5:8700/healthz"


async def health(port: int, host: str = "0.0.0.0") -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KELIAN_")}
    env |= {"KELIAN_HTTP_HOST": host, "KELIAN_HTTP_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(DEPLOY / "healthcheck.py"), env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_health_check_passes_on_a_live_kelian_and_fails_on_none(kelian: Server) -> None:
    assert await health(kelian.config.http_port) == (0, "")
    assert await health(kelian.config.http_port, "127.0.0.1") == (0, "")
    status, stderr = await health(free_tcp_port())
    assert status == 1 and "unhealthy" in stderr


# -- the systemd unit, the kernel settings, the docs ----------------------------------------------


def unit() -> list[tuple[str, str]]:
    """(key, value) of the unit's settings, in order (keys repeat: Environment=)."""
    settings = []
    for line in UNIT.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def test_unit_runs_kelian_serve_with_kelian_configuration() -> None:
    settings = unit()
    values = dict(settings)
    executable, *arguments = shlex.split(values["ExecStart"])
    assert Path(executable).name == "kelian"
    assert build_parser().parse_args(arguments).command == "serve"
    env = dict(v.split("=", 1) for k, v in settings if k == "Environment")
    config = load_config(env)
    assert config.http_host == "127.0.0.1", "behind the TLS proxy, as docs/security.md says"
    for path in (config.database, config.recordings, config.library):
        assert Path(path).is_relative_to("/var/lib/" + values["StateDirectory"]), path
    assert values["User"] != "root" and values["KillMode"] == "mixed"
    assert int(values["LimitNOFILE"]) > 512 * 4  # kelian keeps 512 of them for itself


def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        require_system("systemd-analyze", "systemd-analyze is not installed (apt-get install systemd)")
    script = Path(sys.executable).parent / "kelian"
    if not script.exists():
        pytest.skip("no kelian console script next to this Python to stand in for /opt/kelian/bin/kelian")
    installed = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.MULTILINE)
    assert installed is not None
    copy = tmp_path / "kelian.service"
    copy.write_text(UNIT.read_text().replace(installed.group(1), str(script)))
    result = subprocess.run(
        [binary, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def sysctl() -> dict[str, str]:
    settings = {}
    for line in SYSCTL.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_kernel_settings_allow_the_buffers_kelian_asks_for() -> None:
    settings = sysctl()
    assert int(settings["net.core.rmem_max"]) >= SOCKET_BUFFER
    assert int(settings["net.core.wmem_max"]) >= SOCKET_BUFFER
    docs = DOCS.read_text()
    for key in settings:
        assert f"`{key}`" in docs, f"docs/deploy.md does not explain {key}"


def test_kernel_settings_exist() -> None:
    if not Path("/proc/sys/net/core/rmem_max").exists():
        pytest.skip("no /proc/sys/net/core here (not Linux, or hidden by the network namespace)")
    for key in sysctl():
        assert Path("/proc/sys", *key.split(".")).exists(), key


def test_only_variables_kelian_reads_are_named() -> None:
    """Nothing in deploy/ or its docs names a KELIAN_* variable the configuration does not read."""
    named: dict[str, set[str]] = {}
    for path in [*DEPLOY.rglob("*"), DOCS, REPO / ".dockerignore"]:
        if path.is_file() and "__pycache__" not in path.parts:
            for name in re.findall(r"KELIAN_[A-Z_]*[A-Z]", path.read_text()):
                named.setdefault(name, set()).add(str(path.relative_to(REPO)))
    unknown = {name: files for name, files in named.items() if name not in config_variables()}
    assert not unknown, unknown
    assert "KELIAN_METRICS_TOKEN" in named and "KELIAN_API_SECRET" in named


# -- the cluster: deploy/drain.py, deploy/compose/, deploy/kubernetes/ ------------------------------

COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"
DRAIN = DEPLOY / "drain.py"
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests are checked against
NODES = ("kelian-a", "kelian-b")


def drain_parser() -> argparse.ArgumentParser:
    """drain.py's own options, read from the script as the image runs it."""
    sys.path.insert(0, str(DEPLOY))  # it imports healthcheck.py beside it, as in the image
    try:
        spec = importlib.util.spec_from_file_location("kelian_drain", DRAIN)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DEPLOY))
    parser: argparse.ArgumentParser = module.build_parser()
    return parser


def image_copies(path: str) -> bool:
    """Whether the image has this file at this path (a COPY from deploy/, let in by .dockerignore)."""
    allowed = {line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    return any(
        source in allowed and target == path
        for source, target in (arguments.split()[-2:] for arguments in dockerfile_args("COPY"))
        if source.startswith("deploy/")
    )


async def serve_cluster_node(redis_url: str, folder: Path) -> tuple[int, asyncio.subprocess.Process]:
    """A node as tests/cluster_helpers.serve_node starts it, and its HTTP port."""
    url, process = await serve_node(redis_url, folder)
    return int(url.rsplit(":", 1)[1]), process


async def drain(port: int, *args: str, secret: str = API_SECRET) -> tuple[int, str]:
    """deploy/drain.py run as the image runs it, with the environment kelian has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KELIAN_")}
    env |= {"KELIAN_HTTP_HOST": "0.0.0.0", "KELIAN_HTTP_PORT": str(port)}
    env |= {"KELIAN_API_KEY": API_KEY, "KELIAN_API_SECRET": secret}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(DRAIN), *args, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_drain_script_stops_a_live_node(redis_url: str, tmp_path: Path) -> None:
    port, node = await serve_cluster_node(redis_url, tmp_path / "node")
    try:
        assert (await drain(port, "--deadline", "5", secret="wrong-secret-0123456789abcdef"))[0] == 1
        assert node.returncode is None, "a refused drain leaves the node alone"
        status, stderr = await drain(port, "--deadline", "5")
        assert status == 0, stderr
        assert "stopped" in stderr, stderr
        assert await asyncio.wait_for(node.wait(), 30) == 0, "the node exits, and cleanly"
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


async def test_drain_script_keep_running_returns_once_empty(redis_url: str, tmp_path: Path) -> None:
    """The Kubernetes preStop form: the node stays up, drained; SIGTERM (the kubelet's) stops it."""
    port, node = await serve_cluster_node(redis_url, tmp_path / "node")
    try:
        status, stderr = await drain(port, "--deadline", "5", "--keep-running")
        assert status == 0 and "holds no room" in stderr, stderr
        assert await health(port) == (0, ""), "still up"
        node.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(node.wait(), 30) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


async def test_drain_script_fails_on_no_node() -> None:
    status, stderr = await drain(free_tcp_port())
    assert status == 1 and "drain:" in stderr


# -- compose -----------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())  # anchors merged
    return data


def interpolate(value: str) -> str:
    """Compose's ${NAME:-default} as it reads with NAME unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def udp_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(published, container) of every UDP port, ranges spelled out."""
    pairs = set()
    for port in service.get("ports", []):
        spec, _, protocol = str(port).partition("/")
        if protocol != "udp":
            continue
        published, container = spec.split(":")[-2:]
        low, _, high = published.partition("-")
        target_low, _, target_high = container.partition("-")
        published_range = range(int(low), int(high or low) + 1)
        target_range = range(int(target_low), int(target_high or target_low) + 1)
        assert len(published_range) == len(target_range), port
        pairs |= set(zip(published_range, target_range, strict=True))
    return pairs


def test_compose_has_redis_two_nodes_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", *NODES, "prometheus", "grafana"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    for name, service in services.items():
        assert service["restart"] in ("unless-stopped", "always"), name
        assert "healthcheck" in service, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services and condition == {"condition": "service_healthy"}, name


def test_compose_nodes_are_kelian_cluster_nodes() -> None:
    services = compose()["services"]
    drain_deadline = drain_parser().get_default("deadline")
    media: set[int] = set()
    for name in NODES:
        node = services[name]
        assert node["build"] == {"context": "../..", "dockerfile": "deploy/Dockerfile"}
        arguments = build_parser().parse_args(node["command"])
        assert arguments.command == "serve"
        environment = {k: interpolate(str(v)) for k, v in node["environment"].items()}
        config = load_config(image_env() | environment | {"KELIAN_WORKERS": arguments.workers or "1"})
        assert config.redis_url == "redis://redis:6379/0"
        assert config.node_url == f"http://{name}:{config.http_port}", "how the other nodes reach it"
        assert config.announced_address == "127.0.0.1", "a default that works on one host"
        assert "${KELIAN_ANNOUNCED_ADDRESS" in node["environment"]["KELIAN_ANNOUNCED_ADDRESS"]
        ports = range(config.media_port, config.media_port + config.workers)
        assert config.workers > 1
        assert udp_ports(node) == {(p, p) for p in ports}, f"{name}: every worker's port, on its number"
        assert not media & set(ports), "two nodes on one host need media ports of their own"
        media |= set(ports)
        assert any(str(p).endswith(f":{config.http_port}/tcp") for p in node["ports"]), name
        assert node["env_file"] == "kelian.env", "the API key and secret are not written in the file"
        assert not {"KELIAN_API_KEY", "KELIAN_API_SECRET", "KELIAN_METRICS_TOKEN"} & set(environment)
        grace = int(node["stop_grace_period"].rstrip("s"))
        assert grace > drain_deadline + 10, f"{name}: a drain and a stop must fit before SIGKILL"
        assert node["stop_signal"] == "SIGTERM"
        assert node["healthcheck"]["test"] == [
            "CMD",
            *json.loads(dockerfile_args("HEALTHCHECK")[-1].split(" CMD ", 1)[1]),
        ]
        assert node["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert image_copies("/opt/kelian/drain.py"), "docs tell to docker compose exec drain.py"


def test_compose_prometheus_scrapes_both_nodes(tmp_path: Path) -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if v.startswith(".")}
    config_file = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    assert (COMPOSE / mounts[config_file]).resolve() == COMPOSE / "prometheus.yml"
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        mounted = mounts[str(Path(config_file).parent / rule_file)]
        assert (COMPOSE / mounted).resolve() == PROMETHEUS / "alerts.yml"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == scrape_job()["job_name"], "the alerts and the dashboard select this job"
    targets = job["static_configs"][0]["targets"]
    assert targets == [f"{name}:{services[name]['environment']['KELIAN_HTTP_PORT']}" for name in NODES]
    token = job["authorization"]["credentials_file"]
    assert token.startswith("/run/secrets/") and token.removeprefix("/run/secrets/") in prometheus["secrets"]
    # promtool, with the files where the container has them
    text = (COMPOSE / "prometheus.yml").read_text().replace(token, str(tmp_path / "token"))
    (tmp_path / "prometheus.yml").write_text(text)
    (tmp_path / "token").write_text(METRICS_TOKEN + "\n")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    output = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_compose_grafana_is_provisioned_with_the_dashboard() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    mounts = {
        v.split(":")[1]: (COMPOSE / v.split(":")[0]).resolve()
        for v in grafana["volumes"]
        if v.startswith(".")
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"], "the dashboard's datasource variable"
    assert source["url"] == "http://prometheus:9090" and "prometheus" in services
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "kelian.yml").read_text())["providers"]
    path = provider["options"]["path"]
    assert mounts[f"{path}/kelian.json"] == DASHBOARD


def test_compose_secrets_are_files_kept_out_of_git() -> None:
    model = compose()
    ignored = set((COMPOSE / ".gitignore").read_text().split())
    files = {Path(secret["file"]).name for secret in model["secrets"].values()}
    files |= {model["services"][name]["env_file"] for name in NODES}
    assert files <= ignored
    example = dict(
        line.split("=", 1)
        for line in (COMPOSE / "kelian.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {"KELIAN_API_KEY", "KELIAN_API_SECRET", "KELIAN_METRICS_TOKEN"} <= set(example)
    load_config(example)


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    require_system(
        "docker-compose",
        "neither `docker compose` nor docker-compose is installed (apt-get install docker-compose)",
    )


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    """`docker compose config` (or Debian's docker-compose) checks the file against the Compose
    schema without an engine; the secret files it names must exist, so stand-ins are written."""
    command = compose_command()
    copy = tmp_path / "repo"
    shutil.copytree(
        DEPLOY,
        copy / "deploy",
        ignore=shutil.ignore_patterns("kelian.env", "metrics-token", "grafana-admin-password"),
    )
    folder = copy / "deploy" / "compose"
    shutil.copy(folder / "kelian.env.example", folder / "kelian.env")
    (folder / "metrics-token").write_text(METRICS_TOKEN + "\n")
    (folder / "grafana-admin-password").write_text("stand-in\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KELIAN_", "COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [*command, "config"], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(compose()["services"])
    for name in NODES:
        environment = resolved["services"][name]["environment"]
        assert environment["KELIAN_ANNOUNCED_ADDRESS"] == "127.0.0.1"
        assert environment["KELIAN_API_KEY"] == "APIschool", "from kelian.env"
        load_config({k: str(v) for k, v in environment.items()})


# -- Kubernetes ----------------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    """Every object kustomization.yaml applies, and the example Secret."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = [*kustomization["resources"], "secret.example.yaml"]
    listed = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(files) == listed, "a manifest kustomization.yaml leaves out"
    objects = []
    for name in files:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if document:
                document.setdefault("metadata", {}).setdefault("namespace", kustomization["namespace"])
                objects.append(document)
    return objects


def kubernetes_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in manifests() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_kubernetes_manifests_pass_the_openapi_schema() -> None:
    """kubernetes-validate bundles the Kubernetes OpenAPI schemas as JSON Schema: strict mode also
    refuses a field the API does not have (a typo Kubernetes would drop silently)."""
    try:
        import kubernetes_validate
    except ImportError:
        require_system(
            "kubernetes-validate", "kubernetes-validate is not installed (pip install -e '.[dev]')"
        )
    objects = manifests()
    assert {o["kind"] for o in objects} >= {
        "Namespace",
        "StatefulSet",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Secret",
    }
    for document in objects:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    typo = json.loads(json.dumps(kubernetes_object("Deployment", "kelian")))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def kelian_container() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = kubernetes_object("Deployment", "kelian")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_kubernetes_kelian_pod_runs_a_cluster_node() -> None:
    pod, container = kelian_container()
    arguments = build_parser().parse_args(container["args"])
    assert arguments.command == "serve"
    values = {e["name"]: e.get("value") for e in container["env"]}
    downward = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert downward == {"POD_IP": "status.podIP", "HOST_IP": "status.hostIP"}
    assert values["KELIAN_NODE_URL"].startswith("http://$(POD_IP):")
    assert values["KELIAN_ANNOUNCED_ADDRESS"] == "$(HOST_IP)" and pod["hostNetwork"] is True
    assert set(secrets) == {"KELIAN_API_KEY", "KELIAN_API_SECRET", "KELIAN_METRICS_TOKEN"}
    secret = kubernetes_object("Secret", "kelian")
    for reference in secrets.values():
        assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]
    # as the kubelet would expand them, for a pod at 10.0.0.7
    expanded = {
        name: re.sub(r"\$\((\w+)\)", lambda m: "10.0.0.7", value)
        for name, value in values.items()
        if value is not None and name.startswith("KELIAN_")
    }
    expanded |= {name: secret["stringData"][ref["key"]] for name, ref in secrets.items()}
    config = load_config(image_env() | expanded | {"KELIAN_WORKERS": arguments.workers or "1"})
    assert config.node_url == f"http://10.0.0.7:{config.http_port}"
    assert config.redis_url.startswith("redis://redis:")
    redis_service = kubernetes_object("Service", "redis")
    assert int(config.redis_url.rsplit(":", 1)[1].split("/")[0]) == redis_service["spec"]["ports"][0]["port"]
    ports = {p["name"]: p for p in container["ports"]}
    assert ports["http"]["containerPort"] == config.http_port and ports["http"]["protocol"] == "TCP"
    media = {p["containerPort"] for p in ports.values() if p["protocol"] == "UDP"}
    assert media == set(range(config.media_port, config.media_port + config.workers)), "a port per worker"
    assert all(p["hostPort"] == p["containerPort"] for p in ports.values()), "announced on its number"
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet", "resolves redis on the host's network"
    assert pod["securityContext"]["runAsUser"] == int(dockerfile_args("USER")[-1].split(":")[0])


def test_kubernetes_probes_and_prestop_are_what_kelian_serves() -> None:
    pod, container = kelian_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports[get["port"]] == 8700, probe
    assert container["livenessProbe"]["failureThreshold"] * container["livenessProbe"]["periodSeconds"] >= 30
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "python" and image_copies(command[1]) and command[1] == "/opt/kelian/drain.py"
    options = drain_parser().parse_args(command[2:])
    assert options.keep_running, "the kubelet sends SIGTERM after the hook: the hook must return"
    assert pod["terminationGracePeriodSeconds"] > options.deadline + 15 + 10, "drain, then stop"
    deployment = kubernetes_object("Deployment", "kelian")
    labels = pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        selector = kubernetes_object(kind, "kelian")["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= pod_labels.items(), kind
    service = kubernetes_object("Service", "kelian")["spec"]["ports"]
    assert [p["targetPort"] for p in service] == ["http"]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert (
        anti["topologyKey"] == "kubernetes.io/hostname"
        and anti["labelSelector"]["matchLabels"].items() <= labels.items()
    )
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, "host ports: no surge"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    assert annotations["prometheus.io/path"] == scrape_job()["metrics_path"]


def test_kubernetes_redis_keeps_an_append_only_file() -> None:
    redis = kubernetes_object("StatefulSet", "redis")["spec"]
    (container,) = redis["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    (claim,) = redis["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == args[args.index("--dir") + 1]


def test_kubernetes_prometheus_scrape_job_is_valid(tmp_path: Path) -> None:
    """promtool checks the job's authorization and relabelling; Debian's build has no Kubernetes
    service discovery, so its kubernetes_sd_configs is checked here by shape and left out there."""
    config = yaml.safe_load((KUBERNETES / "prometheus-scrape.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == scrape_job()["job_name"]
    (discovery,) = job.pop("kubernetes_sd_configs")
    assert discovery["role"] == "pod" and discovery["namespaces"]["names"] == ["kelian"]
    kept = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert kept[0]["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    job["static_configs"] = [{"targets": ["10.0.0.7:8700"]}]
    (tmp_path / "token").write_text(METRICS_TOKEN + "\n")
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    output = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in output, output
