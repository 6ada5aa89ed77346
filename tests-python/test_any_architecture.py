"""The relay runs on any node architecture the image is built for (linux/amd64, linux/arm64).

The CRC-32C C target (Sources/CCRC32C), which checksums every queued record, is built with no
architecture flags for arm64 by Debian's cross gcc and by the Swift toolchain's own clang (the
compiler that builds it in the image), linked with the vector driver crc32c_vectors.c and run
under qemu-user on ARMv8.0 and later cores; the same driver runs natively for the SSE4.2 path.
The Dockerfile is checked without a Docker engine: official multi-arch base images, nothing
x86-specific outside the TARGETARCH switch, and that switch run for real against binaries of
both architectures. The cross tools come from scripts/bootstrap.sh; without them these tests
fail, they never skip.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, HarnessError
from test_deploy_files import DOCKERFILE, PACKAGE_SWIFT, dockerfile_stages

CRC_TARGET = REPO_ROOT / "Sources" / "CCRC32C"
VECTOR_DRIVER = Path(__file__).resolve().parent / "crc32c_vectors.c"
ARM64_SYSROOT = Path("/usr/aarch64-linux-gnu")
# Cores qemu-user emulates: ARMv8.0 with the optional CRC32 extension (Cortex-A53: Raspberry Pi 3
# and 4, Graviton 1's A72 alike), Neoverse N1 (Graviton 2, Ampere Altra) and every feature qemu has.
ARM64_CPUS = ("cortex-a53", "neoverse-n1", "max")
WARNINGS = ("-O2", "-Wall", "-Wextra", "-Werror")
# Names and flags that tie a build to x86; allowed in the Dockerfile only inside the arch switch.
X86_ONLY = re.compile(r"x86[_-]64|amd64|i[3-6]86|-msse|sse4|-march|-mcpu|-mtune")
ARCH_SWITCH = re.compile(r'case "\$arch" in(?P<arms>.*?)esac', re.S)
ARCH_ARM = re.compile(r"(\w+)\) machine='([^']+)' ;;")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise HarnessError(f"{name} is missing: run scripts/bootstrap.sh (gcc-aarch64-linux-gnu, "
                           "libc6-dev-arm64-cross, qemu-user)")
    return path


def swift_clang() -> str:
    """The clang of the Swift toolchain, which SwiftPM compiles C targets with."""
    clang = Path(tool("swift")).resolve().parent / "clang"
    if not clang.exists():
        raise HarnessError(f"the Swift toolchain has no clang beside swift: {clang}")
    return str(clang)


def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise HarnessError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def crc_object(compiler: str, directory: Path) -> Path:
    """Sources/CCRC32C compiled for arm64 with `compiler` ("gcc" or "clang"), no -march."""
    output = directory / f"crc32c_hardware.{compiler}.o"
    source = str(CRC_TARGET / "crc32c_hardware.c")
    include = f"-I{CRC_TARGET / 'include'}"
    if compiler == "gcc":
        command = [tool("aarch64-linux-gnu-gcc"), *WARNINGS, include, "-c", source, "-o", str(output)]
    else:
        command = [swift_clang(), "--target=aarch64-linux-gnu", "-isystem", str(ARM64_SYSROOT / "include"),
                   *WARNINGS, include, "-c", source, "-o", str(output)]
    run(command)
    return output


def arm64_driver(crc: Path, hide_hwcap_crc32: bool) -> Path:
    output = crc.with_suffix(".hidden" if hide_hwcap_crc32 else ".driver")
    define = ["-DRELAY_HIDE_HWCAP_CRC32"] if hide_hwcap_crc32 else []
    run([tool("aarch64-linux-gnu-gcc"), *WARNINGS, *define, f"-I{CRC_TARGET / 'include'}", str(VECTOR_DRIVER),
         str(crc), "-o", str(output), "-ldl"])
    return output


def qemu(binary: Path, mode: str, cpu: str = "max") -> subprocess.CompletedProcess:
    if not (ARM64_SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists():
        raise HarnessError(f"no arm64 C library under {ARM64_SYSROOT}: run scripts/bootstrap.sh")
    return subprocess.run([tool("qemu-aarch64"), "-cpu", cpu, "-L", str(ARM64_SYSROOT), str(binary), mode],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_arm64_crc_instructions_pass_the_vectors_under_qemu(compiler: str, tmp_path: Path):
    """A relay on an arm64 node pool (Graviton, Ampere, a Raspberry Pi): the target, built without
    -march, emits the CRC32C instructions, finds them through HWCAP_CRC32 on every core, and they
    give the standard values and the bitwise reference's on every alignment and length."""
    crc = crc_object(compiler, tmp_path)
    disassembly = run([tool("aarch64-linux-gnu-objdump"), "-d", str(crc)]).stdout
    used = set(re.findall(r"\bcrc32c[bhwx]\b", disassembly))
    assert used == {"crc32cb", "crc32cx"}, f"{compiler} emitted {sorted(used)}"

    driver = arm64_driver(crc, hide_hwcap_crc32=False)
    for cpu in ARM64_CPUS:
        result = qemu(driver, "hardware", cpu)
        assert result.returncode == 0 and result.stdout.startswith("OK hardware: available=1"), (
            f"-cpu {cpu}: exit {result.returncode}\n{result.stdout}{result.stderr}")


def test_arm64_without_the_crc_extension_falls_back_to_tables(tmp_path: Path):
    """An ARMv8.0 core without the optional CRC32 extension (qemu has none, so the driver hides the
    HWCAP bit from getauxval): the target reports no instruction, so the relay takes its Swift
    tables instead of dying of SIGILL; and the hiding is what made the difference."""
    crc = crc_object("gcc", tmp_path)
    hidden = qemu(arm64_driver(crc, hide_hwcap_crc32=True), "fallback")
    assert hidden.returncode == 0 and hidden.stdout.startswith("OK fallback: available=0"), (
        hidden.stdout + hidden.stderr)
    shown = qemu(arm64_driver(crc, hide_hwcap_crc32=False), "fallback")
    assert shown.returncode == 1 and "available() is 1, want 0" in shown.stdout, shown.stdout + shown.stderr


def test_native_crc_instruction_passes_the_vectors(tmp_path: Path):
    """The relay on the build machine's own CPU (SSE4.2 on an x86-64 node, CRC32 on an arm64 one),
    compiled by the Swift toolchain's clang as SwiftPM does."""
    machine = platform.machine()
    if machine not in ("x86_64", "aarch64"):
        raise HarnessError(f"no CRC instruction path for {machine}: add one or run on amd64/arm64")
    driver = tmp_path / "crc32c-vectors"
    run([swift_clang(), *WARNINGS, f"-I{CRC_TARGET / 'include'}", str(CRC_TARGET / "crc32c_hardware.c"),
         str(VECTOR_DRIVER), "-o", str(driver)])
    result = subprocess.run([str(driver), "hardware"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("OK hardware: available=1"), (
        result.stdout + result.stderr)


def test_dockerfile_base_images_are_official_multi_arch_images():
    """Operator: `docker buildx build --platform linux/amd64,linux/arm64`. Every stage starts from
    a Docker Official Image whose tags are published for both (swift:<version>-bookworm,
    debian:bookworm-slim; not pulled here, there is no engine), without a pinned --platform, and
    an earlier stage's name only otherwise."""
    stage_names = {line.split()[-1] for line in DOCKERFILE.read_text().splitlines()
                   if re.match(r"FROM\s+\S+\s+AS\s+\S+\s*$", line, re.I)}
    for stage in dockerfile_stages():
        assert not stage.base.startswith("--platform"), f"FROM pins a platform: {stage.base}"
        official = re.fullmatch(r"(?:docker\.io/library/)?(swift:\d+\.\d+(?:\.\d+)?-bookworm|debian:bookworm-slim)",
                                stage.base)
        assert official or stage.base in stage_names, f"{stage.base} is not a known multi-arch official image"


def test_dockerfile_has_nothing_x86_specific_outside_the_arch_switch():
    """A maintainer adding an x86-only path or flag (x86_64-linux-gnu, -msse4.2, amd64 .debs) breaks
    the arm64 image; only the TARGETARCH switch may name an architecture, and it names exactly the
    two the image is built for. Package.swift passes no CPU flags either (the CRC target uses
    per-function target attributes)."""
    switches = 0
    for stage in dockerfile_stages():
        for index, (keyword, text) in enumerate(stage.instructions):
            if "TARGETARCH" in text and keyword == "RUN":
                declared = [argument for kw, argument in stage.instructions[:index] if kw == "ARG"]
                assert "TARGETARCH" in declared, f"RUN uses TARGETARCH before ARG TARGETARCH: {text}"
            switch = ARCH_SWITCH.search(text)
            if switch:
                switches += 1
                arms = dict(ARCH_ARM.findall(switch.group("arms")))
                assert set(arms) == {"amd64", "arm64"}, arms
                text = text[:switch.start()] + text[switch.end():]
            assert not X86_ONLY.search(text), f"x86-specific {keyword} outside the arch switch: {text}"
    assert switches == 1, "the build stage should check the binary against TARGETARCH once"
    assert not re.search(r"-msse|-march|-mcpu|-mcrc", PACKAGE_SWIFT.read_text()), "Package.swift passes CPU flags"


def arch_check_script(out: Path) -> str:
    """The build stage's RUN that switches on TARGETARCH, writing to `out` instead of /out."""
    [script] = [text for keyword, text in dockerfile_stages()[0].instructions
                if keyword == "RUN" and ARCH_SWITCH.search(text)]
    return script.replace("/out/", f"{out}/")


def test_dockerfile_arch_check_accepts_only_a_binary_for_the_target(tmp_path: Path):
    """BuildKit on an arm64 node, or an amd64 one emulating arm64: the build stage's own check runs
    with a stub `swift build` that yields a real ELF program of either architecture; it
    passes when the binary is for TARGETARCH, fails when a stage ran on the wrong platform, and
    refuses an architecture the image is not built for."""
    binaries = {"arm64": arm64_driver(crc_object("gcc", tmp_path), hide_hwcap_crc32=False)}
    native = tmp_path / "native"
    run([swift_clang(), f"-I{CRC_TARGET / 'include'}", str(CRC_TARGET / "crc32c_hardware.c"),
         str(VECTOR_DRIVER), "-o", str(native)])
    binaries[{"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]] = native
    if "amd64" not in binaries:
        raise HarnessError("an amd64 binary is needed: run on an x86-64 machine")
    stub = tmp_path / "bin"
    bin_path = tmp_path / "release"
    stub.mkdir()
    bin_path.mkdir()
    swift = stub / "swift"
    swift.write_text(f'#!/bin/sh\ncase "$*" in *--show-bin-path*) echo {bin_path} ;; esac\n')
    swift.chmod(0o755)
    tool("readelf")

    def build(target: str, binary: Path) -> subprocess.CompletedProcess:
        shutil.copy(binary, bin_path / "skywalking-kafka-relay")
        out = tmp_path / f"out-{target}-{binary.name}"
        path = f"{stub}:/usr/bin:/bin"
        return subprocess.run(["bash", "-c", arch_check_script(out)], capture_output=True, text=True,
                              timeout=30, env={"PATH": path, "TARGETARCH": target})

    for target, binary in binaries.items():
        right = build(target, binary)
        assert right.returncode == 0, f"{target}: {right.stderr}"
    wrong = build("arm64", binaries["amd64"])
    assert wrong.returncode == 1 and "not built for arm64" in wrong.stderr, wrong.stderr
    wrong = build("amd64", binaries["arm64"])
    assert wrong.returncode == 1 and "not built for amd64" in wrong.stderr, wrong.stderr
    unsupported = build("s390x", binaries["amd64"])
    assert unsupported.returncode == 1 and "unsupported TARGETARCH s390x" in unsupported.stderr, unsupported.stderr
