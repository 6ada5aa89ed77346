"""The shipped configuration and the Dockerfile agree with the binary and with each other:
config/relay.env.example and the Dockerfile's documented `docker run` are valid for
`--check-config` and name only variables `--help` knows; every default the example states is the
code's, and the example used with `docker run --env-file` keeps the queue in the image's volume;
the image builds with the Swift the tests
run on, runs as a non-root uid with the queue on a volume, and its HEALTHCHECK really follows
SW_RELAY_ADMIN_ADDRESS. (The Kubernetes kit: test_kubernetes_kit.py; the compose quick start:
test_compose_quickstart.py.)
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from conftest import REPO_ROOT, HarnessError, Relay, free_loopback_port
from deploy_support import (GRACE_MARGIN_S, RELAY_UID, assert_check_config_accepts, check_config, help_default,
                            port_of)

ENV_EXAMPLE = REPO_ROOT / "config" / "relay.env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
PACKAGE_SWIFT = REPO_ROOT / "Package.swift"
PRODUCER_DEFAULTS_SOURCE = REPO_ROOT / "Sources" / "KafkaPublisher" / "KafkaPublisherConfiguration.swift"

PRODUCER_PREFIX = "SW_RELAY_KAFKA_PRODUCER_"
ASSIGNMENT = re.compile(r"^(SW_RELAY_[A-Z0-9_]+)=(.*)$")
COMMENTED_ASSIGNMENT = re.compile(r"^#\s*(SW_RELAY_[A-Z0-9_]+)=(\S*)")
COMMENTED_PRODUCER = re.compile(r"^#\s*(SW_RELAY_KAFKA_PRODUCER_[A-Z0-9_]+)=")
# Set in the example to a value of the reader's (a required variable has no default).
EXAMPLE_VALUES = {"SW_RELAY_KAFKA_BOOTSTRAP_SERVERS"}


# --------------------------------------------------------------------------- parsing


def example_environment() -> dict[str, str]:
    """The uncommented `NAME=value` lines of relay.env.example."""
    environment = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            environment[match.group(1)] = match.group(2)
    return environment


def example_producer_variables() -> list[str]:
    return [m.group(1) for line in ENV_EXAMPLE.read_text().splitlines()
            if (m := COMMENTED_PRODUCER.match(line))]


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"final stage should have one {keyword}, has {found}"
        return found[0]

    def env(self) -> dict[str, str]:
        environment = {}
        for arguments in self.all("ENV"):
            for word in shlex.split(arguments):
                name, equals, value = word.partition("=")
                assert equals, f"ENV in legacy 'NAME value' form: {arguments!r}"
                environment[name] = value
        return environment


def dockerfile_stages() -> list[Stage]:
    """Instructions per stage, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append(Stage(base=arguments.split()[0]))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments.strip()))
    return stages


def exec_form(arguments: str) -> list[str]:
    """`["a", "b"]` (exec form) as a list; shell form is split like a shell would."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def example_commented_defaults() -> dict[str, str]:
    """`# NAME=value` lines of relay.env.example (other than the producer examples): defaults stated
    without being set."""
    return {m.group(1): m.group(2) for line in ENV_EXAMPLE.read_text().splitlines()
            if (m := COMMENTED_ASSIGNMENT.match(line)) and not m.group(1).startswith(PRODUCER_PREFIX)}


def code_producer_defaults() -> dict[str, str]:
    """The producer properties the relay sets before the user's (KafkaPublisherConfiguration)."""
    source = PRODUCER_DEFAULTS_SOURCE.read_text()
    table = re.search(r"defaultProducerProperties: KeyValuePairs<String, String> = \[(.*?)\]", source, re.DOTALL)
    assert table, f"no defaultProducerProperties table in {PRODUCER_DEFAULTS_SOURCE}"
    return dict(re.findall(r'"([^"]+)":\s*"([^"]*)"', table.group(1)))


def example_producer_defaults() -> dict[str, str]:
    """The producer defaults the example's prose states ("The relay sets a=b, c=d; ...")."""
    prose = " ".join(line.lstrip("# ") for line in ENV_EXAMPLE.read_text().splitlines() if line.startswith("#"))
    stated = re.search(r"The relay sets (.*?); these override them", prose)
    assert stated, "relay.env.example should state the producer defaults"
    return dict(pair.strip().split("=", 1) for pair in re.split(r",\s*", stated.group(1)))


# --------------------------------------------------------------------------- 4. --help and --check-config


def test_check_config_accepts_the_example_environment(tmp_path: Path):
    """Operator: copies relay.env.example for a bare binary with its own queue directory."""
    environment = {**example_environment(), "SW_RELAY_QUEUE_DIR": str(tmp_path)}
    result = check_config(environment)

    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout, result.stdout
    assert f"queue_dir={tmp_path}" in result.stdout, "must report what it read"


def test_every_default_the_example_states_is_the_codes():
    """Operator: reads relay.env.example as the list of defaults (issue 23 item 6: it said
    linger.ms=5 where the code uses 10); each value it sets or shows commented out is the one
    `--help` prints, and the producer defaults it names are the ones the producer is created with."""
    stated = {**example_commented_defaults(), **example_environment()}
    differing = {name: (value, help_default(name)) for name, value in stated.items()
                 if name not in EXAMPLE_VALUES and value != help_default(name).replace("(unset)", "")}
    assert not differing, f"example value != --help default: {differing}"
    for name in EXAMPLE_VALUES:
        assert stated.get(name) not in (None, "", "embedded"), f"{name} should show real brokers"
    assert example_producer_defaults() == code_producer_defaults()


def test_the_example_with_docker_env_file_keeps_the_queue_in_the_volume():
    """Operator: `docker run --env-file config/relay.env.example ...`; the file's variables override
    the image's ENV, and the queue must stay in the image's VOLUME (issue 23 item 6: the example
    moved it to ./relay-queue inside the container's writable layer, lost with the container)."""
    final = dockerfile_stages()[-1]
    volumes = [v for arguments in final.all("VOLUME") for v in exec_form(arguments)]
    environment = {**final.env(), **example_environment()}
    assert environment["SW_RELAY_QUEUE_DIR"] in volumes, (environment["SW_RELAY_QUEUE_DIR"], volumes)


def test_check_config_accepts_the_example_producer_properties(tmp_path: Path):
    """An operator copying the example's Kafka TLS/SASL lines gets properties librdkafka takes
    (the CA file must exist and be PEM: --check-config creates a producer, which loads it)."""
    system_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not system_bundle.is_file():
        raise HarnessError(f"{system_bundle} (Debian's ca-certificates) is needed as a PEM CA file")
    ca = tmp_path / "kafka-ca.pem"
    shutil.copyfile(system_bundle, ca)
    values = {"COMPRESSION_TYPE": "lz4", "SECURITY_PROTOCOL": "sasl_ssl", "SASL_MECHANISM": "SCRAM-SHA-512",
              "SSL_CA_LOCATION": str(ca)}
    variables = {name: next((v for k, v in values.items() if name.endswith(k)), "x")
                 for name in example_producer_variables()}
    result = check_config({**example_environment(), **variables})

    assert result.returncode == 0, result.stderr


def test_check_config_has_librdkafka_check_every_property():
    """A misspelt or invalid producer property fails --check-config, not the first start."""
    misspelt = check_config({**example_environment(), "SW_RELAY_KAFKA_PRODUCER_COMPRESION_TYPE": "lz4"})
    invalid = check_config({**example_environment(), "SW_RELAY_KAFKA_PRODUCER_COMPRESSION_TYPE": "zip"})

    assert misspelt.returncode == 2 and "compresion.type" in misspelt.stderr, misspelt.stderr
    assert invalid.returncode == 2 and "compression.type" in invalid.stderr, invalid.stderr


def dockerfile_arguments() -> dict[str, str]:
    """Default values of the final stage's ARG instructions."""
    return dict(argument.split("=", 1) for argument in dockerfile_stages()[-1].all("ARG") if "=" in argument)


def documented_docker_run() -> list[str]:
    """The `# Run:` line of the Dockerfile's header, as argv."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("# Run:")]
    assert len(lines) == 1, f"one '# Run:' line expected, found {lines}"
    return shlex.split(lines[0].removeprefix("# Run:"))


def docker_run_options(argv: list[str]) -> tuple[dict[str, list[str]], str]:
    """`docker run` options by name (values in order) and the image."""
    assert argv[:2] == ["docker", "run"], argv
    options: dict[str, list[str]] = {}
    rest = argv[2:]
    while rest and rest[0].startswith("-"):
        name, equals, value = rest.pop(0).partition("=")
        options.setdefault(name, []).append(value if equals else rest.pop(0))
    assert len(rest) == 1, f"expected only the image after the options: {rest}"
    return options, rest[0]


def healthcheck_command() -> list[str]:
    healthcheck = dockerfile_stages()[-1].one("HEALTHCHECK")
    assert " CMD " in f" {healthcheck}", healthcheck
    command = exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert command[:2] == ["bash", "-c"], f"the health check should be a bash command: {command}"
    return command


def run_healthcheck(environment: dict[str, str]) -> tuple[int, float]:
    """Runs the HEALTHCHECK command here as Docker would in the container; (exit code, seconds)."""
    bash = shutil.which("bash")
    if bash is None:
        raise HarnessError("bash is needed to run the Dockerfile's HEALTHCHECK")
    started = time.monotonic()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SW_RELAY_")}
    result = subprocess.run([bash, *healthcheck_command()[1:]], env={**clean, **environment},
                            capture_output=True, text=True, timeout=15)
    return result.returncode, time.monotonic() - started


# --------------------------------------------------------------------------- 5. Dockerfile


def test_check_config_accepts_the_documented_docker_run():
    """Operator: copies the Dockerfile's `docker run` line; the image's ENV plus its -e variables
    form a configuration the relay accepts, with real brokers (not the embedded development Kafka)."""
    options, _ = docker_run_options(documented_docker_run())
    environment = dockerfile_stages()[-1].env()
    environment.update(dict(value.split("=", 1) for value in options.get("-e", [])))
    servers = environment.get("SW_RELAY_KAFKA_BOOTSTRAP_SERVERS")
    assert servers and servers != "embedded", "the documented docker run must name Kafka brokers"

    result = assert_check_config_accepts(environment, "the documented docker run")

    assert f"kafka={servers}" in result.stdout


def test_documented_docker_run_follows_the_grace_rule_and_the_image():
    """Operator: runs the documented line and later `docker stop`s it; the stop timeout leaves the
    whole shutdown budget (drain + Kafka flush) plus 10 s, the queue goes to the image's volume,
    and the ports and image tag are the image's own."""
    options, image = docker_run_options(documented_docker_run())
    final = dockerfile_stages()[-1]
    environment = {**final.env(), **dict(value.split("=", 1) for value in options.get("-e", []))}
    budget = int(environment.get("SW_RELAY_SHUTDOWN_TIMEOUT_S", help_default("SW_RELAY_SHUTDOWN_TIMEOUT_S")))

    [stop_timeout] = options.get("--stop-timeout", ["<missing>"])
    assert stop_timeout.isdigit() and int(stop_timeout) >= budget + GRACE_MARGIN_S, (
        f"--stop-timeout {stop_timeout} must be >= SW_RELAY_SHUTDOWN_TIMEOUT_S ({budget}) + {GRACE_MARGIN_S}")
    volumes = [v for arguments in final.all("VOLUME") for v in exec_form(arguments)]
    assert [v.split(":", 1)[1] for v in options["-v"]] == volumes
    exposed = {int(p.split("/")[0]) for arguments in final.all("EXPOSE") for p in arguments.split()}
    assert {int(p.split(":")[-1]) for p in options["-p"]} == exposed
    assert image == f"skywalking-kafka-relay:{dockerfile_arguments()['VERSION']}"
    build = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("# Build:")]
    assert build and image in build[0], f"the documented build should tag {image}: {build}"


def test_dockerfile_builds_with_the_swift_the_tests_use():
    """Operator: `docker build .`; the image's compiler is the Swift release the test suite runs on,
    and the dependency versions are the ones Package.resolved pins when the checkout has it."""
    build = dockerfile_stages()[0]
    match = re.fullmatch(r"swift:(\d+)\.(\d+)(?:\.\d+)?-bookworm", build.base)
    assert match, f"the build stage should be FROM swift:<version>-bookworm, is {build.base}"
    swift = shutil.which("swift")
    if swift is None:
        raise HarnessError("the Swift toolchain is not on PATH: cannot compare the Dockerfile's Swift with it")
    version = subprocess.run([swift, "--version"], capture_output=True, text=True, timeout=60)
    tested = re.search(r"Swift version (\d+)\.(\d+)", version.stdout + version.stderr)
    assert tested, version.stdout + version.stderr
    assert match.groups() == tested.groups(), f"Dockerfile {build.base}, tests run on Swift {tested.group(0)}"

    copies = [exec_form(arguments) for arguments in build.all("COPY")]
    manifest_copy = [sources for sources in copies if "Package.swift" in sources]
    assert manifest_copy, f"no COPY of Package.swift: {copies}"
    patterns = manifest_copy[0][:-1]
    # Docker's COPY fails only when no source matches at all: a pattern for the optional file.
    optional = [p for p in patterns if p != "Package.swift"]
    assert optional and all(any(ch in p for ch in "*?[") for p in optional), patterns
    assert any(fnmatch.fnmatchcase("Package.resolved", p) for p in optional), patterns
    assert not any(fnmatch.fnmatchcase(name, p) for p in optional for name in ("Package.swift", "Sources")), patterns
    first_build = next(i for i, (name, arguments) in enumerate(build.instructions)
                       if name == "RUN" and "swift " in arguments)
    manifest_index = next(i for i, (name, arguments) in enumerate(build.instructions)
                          if name == "COPY" and "Package.swift" in arguments)
    assert manifest_index < first_build, "Package.resolved must be in place before the first swift command"


def test_dockerfile_has_oci_labels():
    """Registry and scanner tooling read the OCI labels: title, description, version (the ARG the
    kit's image tags follow) and revision."""
    final = dockerfile_stages()[-1]
    labels = {}
    for arguments in final.all("LABEL"):
        for word in shlex.split(arguments):
            name, _, value = word.partition("=")
            labels[name] = value
    for key in ("title", "description", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"missing org.opencontainers.image.{key}: {labels}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert "VERSION" in dockerfile_arguments() and "REVISION" in dockerfile_arguments()


def test_dockerfile_runtime_stage():
    """Operator: runs the image; it is a non-root uid (the one the Kubernetes kit expects) with the
    queue directory on a volume, the relay's ports exposed, and the relay as its entrypoint."""
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the Dockerfile should be multi-stage (build, then a slim runtime)"
    final = stages[-1]
    environment = final.env()

    user = final.all("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) == RELAY_UID, f"USER must be the numeric uid {RELAY_UID}, is {user!r}"

    volumes = [v for arguments in final.all("VOLUME") for v in exec_form(arguments)]
    assert environment.get("SW_RELAY_QUEUE_DIR") in volumes, (
        f"SW_RELAY_QUEUE_DIR={environment.get('SW_RELAY_QUEUE_DIR')} must be a VOLUME ({volumes})")

    exposed = {int(p.split("/")[0]) for arguments in final.all("EXPOSE") for p in arguments.split()}
    grpc_port = port_of(environment.get("SW_RELAY_GRPC_ADDRESS", "0.0.0.0:11800"))
    admin_port = port_of(environment.get("SW_RELAY_ADMIN_ADDRESS", "0.0.0.0:1234"))
    assert {11800, 1234} <= exposed and {grpc_port, admin_port} <= exposed, exposed
    assert "/healthz" in final.one("HEALTHCHECK")

    product = re.search(r'\.executable\(\s*name:\s*"([^"]+)"\s*,\s*targets:\s*\["skywalking-kafka-relay"\]',
                        PACKAGE_SWIFT.read_text())
    assert product, "Package.swift has no skywalking-kafka-relay executable product"
    entrypoint = exec_form(final.one("ENTRYPOINT"))
    assert Path(entrypoint[0]).name == product.group(1) == "skywalking-kafka-relay", entrypoint
    copied = " ".join(final.all("COPY"))
    assert entrypoint[0] in copied, f"the ENTRYPOINT binary {entrypoint[0]} is not copied into the final stage"


def test_healthcheck_follows_the_admin_address(relay_factory: Callable[..., Relay]):
    """Docker: runs the image's HEALTHCHECK in a container whose SW_RELAY_ADMIN_ADDRESS was changed;
    the check must ask that port (a wildcard host means loopback), pass while the relay is up, fail
    when nothing answers there, and finish within the HEALTHCHECK --timeout."""
    relay = relay_factory().start()
    port = relay.admin_port
    timeout = re.search(r"--timeout=(\d+)s", dockerfile_stages()[-1].one("HEALTHCHECK"))
    assert timeout, "the HEALTHCHECK should set --timeout"

    for address in (f"0.0.0.0:{port}", f"127.0.0.1:{port}"):
        code, seconds = run_healthcheck({"SW_RELAY_ADMIN_ADDRESS": address})
        assert code == 0, f"the health check failed against a healthy relay at {address}"
        assert seconds < int(timeout.group(1)), f"took {seconds:.1f} s"

    closed = free_loopback_port()
    code, seconds = run_healthcheck({"SW_RELAY_ADMIN_ADDRESS": f"0.0.0.0:{closed}"})
    assert code != 0, f"the health check passed with nothing listening on {closed}"
    assert seconds < int(timeout.group(1))

    relay.stop()
    code, _ = run_healthcheck({"SW_RELAY_ADMIN_ADDRESS": f"127.0.0.1:{port}"})
    assert code != 0, "the health check passed after the relay stopped"


def test_healthcheck_fails_on_an_answer_other_than_200(tmp_path: Path):
    """Docker: the admin port answers, but not 200 (e.g. something else took the port); the check
    must not count that as healthy."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_error(503)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, _ = run_healthcheck({"SW_RELAY_ADMIN_ADDRESS": f"127.0.0.1:{server.server_address[1]}"})
    finally:
        server.shutdown()
        thread.join(5)
    assert code != 0, "a 503 answer passed the health check"


def test_readme_docker_run_is_the_dockerfile_one():
    """Operator: copies the `docker run` from the README's Container section; it is the line the
    tests above check in the Dockerfile (same stop timeout, volume, brokers and image)."""
    readme = (REPO_ROOT / "README.md").read_text()
    container = readme[readme.index("### Container"):]
    block = re.search(r"```sh\n(.*?)```", container, re.DOTALL)
    assert block, "no sh block in the README's Container section"
    commands = [shlex.split(line) for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]
    runs = [argv for argv in commands if argv[:2] == ["docker", "run"]]
    assert runs == [documented_docker_run()], f"README: {runs}\nDockerfile: {documented_docker_run()}"
    builds = [argv for argv in commands if argv[:2] == ["docker", "build"]]
    dockerfile_build = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("# Build:")]
    assert builds == [shlex.split(dockerfile_build[0].removeprefix("# Build:"))]
