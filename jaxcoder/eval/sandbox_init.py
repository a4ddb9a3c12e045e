"""The first process of a sandboxed sample (standard library only; run as a script, never imported
by the evaluator).

It reads a JSON spec on stdin, enters new mount, PID, network, IPC and UTS namespaces (through a
user namespace when not root; as root asked for a user namespace, it first becomes the slot's own
uid so that the process limit binds), and forks the sample's PID 1, which:

1. builds a private root: a small tmpfs holding read-only bind mounts of the system directories
   (`ro_binds`), a minimal /dev, a fresh /proc of the new PID namespace, and size-limited tmpfs
   mounts for the sample directory (/sandbox) and /tmp, /var/tmp, /dev/shm; pivots into it and
   detaches the host's root, so nothing the sample writes reaches the host and it never sees the
   files of the evaluator or of other samples;
2. runs the spec's commands one after another as a child that drops to an unprivileged uid (as
   root: a uid per concurrent sample) or to no capabilities (user namespace), with rlimits and
   `no_new_privs`, stopping at the first that fails; the sample's wall clock starts with its first
   command (PID 1 writes to `ready_fd`), so a slow sandbox build is never counted against it;
3. exits with the last command's status. When PID 1 exits, the kernel kills every process left in
   the namespace, detached or not; PID 1 dies with its parent (PR_SET_PDEATHSIG) and by its own
   alarm, so no process outlives the sample.

Why our own code rather than bubblewrap or nsjail: neither is installed on the JAX hosts this runs
on, and the few system calls needed (unshare, mount, pivot_root, prctl) are in libc.
"""

import ctypes
import json
import os
import platform
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
DEVICES = ("null", "zero", "full", "random", "urandom")
# statvfs flags that a bind remount must keep (the kernel refuses to clear locked ones).
KEEP = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
        (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))

libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s):
    return None if s is None else s.encode()


def mount(source, target, fstype, flags, data=None):
    _check(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {target}")


def prctl(option, arg):
    _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def bind_readonly(source, target):
    mount(source, target, None, MS_BIND | MS_REC)
    kept = os.statvfs(target).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    flags |= sum(ms for st, ms in KEEP if kept & st)
    mount(None, target, None, flags)


def tmpfs(target, size, mode, flags=MS_NOSUID | MS_NODEV):
    os.makedirs(target, exist_ok=True)
    mount("tmpfs", target, "tmpfs", flags, f"size={size},mode={mode:o}")


def build_root(spec):
    """The sample's filesystem under spec['stage'] (see the module docstring)."""
    root = spec["stage"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    tmpfs(root, 1 << 20, 0o755)
    for path in spec["ro_binds"]:
        target = root + path
        if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems: the same link
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
            bind_readonly(path, target)
        elif os.path.exists(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
            bind_readonly(path, target)
    tmpfs(root + "/dev", 1 << 16, 0o755, MS_NOSUID | MS_NOEXEC)
    for name in DEVICES:
        open(f"{root}/dev/{name}", "w").close()
        mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{root}/dev/{name}")
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        tmpfs(root + path, spec["tmp_bytes"], 0o1777)
    tmpfs(root + "/sandbox", spec["disk_bytes"], 0o700, MS_NOSUID | MS_NODEV)
    write_files(spec, root + "/sandbox")
    os.makedirs(root + "/proc", exist_ok=True)
    try:  # while the host's /proc is still visible: a user namespace may mount one only then
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as e:  # a locked-down host: the sample runs without /proc
        os.write(2, f"sandbox: no /proc ({e})\n".encode())
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")  # the host's tree is gone from here on
    os.chdir("/")
    libc.sethostname(b"sandbox", 7)


def write_files(spec, directory):
    for name, content in spec["files"].items():
        if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == "..":
            raise OSError(f"sample file name {name!r} is outside the sample's directory")
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    if os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(directory):
            for name in (dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)):
                os.chown(name, spec["uid"], spec["uid"])


def drop_privileges(spec):
    """In the command's child: no way back to the privileges PID 1 holds."""
    if spec["mode"] != "userns" and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(spec["uid"], spec["uid"], spec["uid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    else:  # uid 0 of a user namespace: drop every capability before exec
        for cap in range(64):
            if libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
                break  # past the last capability this kernel knows
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    limits = spec["limits"]
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def run_command(spec, argv, token):
    """Forks, drops privileges and execs argv in /sandbox; returns the wait status."""
    token_r, token_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(token_r if token else os.open("/dev/null", os.O_RDONLY), 0)
            os.dup2(spec["result_fd"], 3)
            os.closerange(4, 1 << 16)
            drop_privileges(spec)
            os.chdir(spec.get("workdir", "/sandbox"))
            os.execve(argv[0], argv, spec["env"])
        except BaseException as e:  # noqa: BLE001 - report anything, exec failed
            os.write(2, f"sandbox: cannot run {argv[0]}: {e}\n".encode())
        os._exit(127)
    os.close(token_r)
    if token:
        os.write(token_w, token.encode() + b"\n")
    os.close(token_w)
    while True:  # PID 1 reaps every orphan until the command itself ends
        done, status = os.waitpid(-1, 0)
        if done == pid:
            return status


def exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def sample_init(spec):
    """PID 1 of the sample's PID namespace."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_DUMPABLE, 0)  # the sample may not read this process's memory (the token)
    # The kernel ignores default-action signals sent to a namespace's init: handle the alarm.
    signal.signal(signal.SIGALRM, lambda *_: os._exit(124))
    signal.alarm(spec["setup_alarm_s"])
    try:
        build_root(spec)
    except OSError as e:
        os.write(2, f"sandbox: cannot build the sample's root: {e}\n".encode())
        os._exit(125)
    os._exit(run_commands(spec))


def run_commands(spec) -> int:
    """The commands in order, stopping at the first failure; the last one gets the token."""
    # The sample's clock starts now: building its sandbox is the evaluator's cost, not the sample's.
    signal.alarm(spec["alarm_s"])
    os.write(spec["ready_fd"], b"r")
    os.close(spec["ready_fd"])
    code = 0
    commands = spec["commands"]
    for i, argv in enumerate(commands):
        code = exit_code(run_command(spec, argv, spec["token"] if i == len(commands) - 1 else None))
        if code != 0:
            break
    return code


def main():
    spec = json.loads(sys.stdin.read())
    os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    if spec["mode"] == "limits":  # no namespaces here: the host directory the evaluator made
        write_files(spec, spec["workdir"])
        os._exit(run_commands(spec))
    if spec["mode"] == "userns" and spec["outer_uid"] is not None:
        # Real root in a user namespace would still be exempt from RLIMIT_NPROC (the kernel checks
        # the real user), so a fork bomb could fill the host's PID table: become the slot's uid first.
        os.setgroups([])
        os.setresgid(spec["outer_uid"], spec["outer_uid"], spec["outer_uid"])
        os.setresuid(spec["outer_uid"], spec["outer_uid"], spec["outer_uid"])
        prctl(PR_SET_DUMPABLE, 1)  # a uid change hides /proc/self from us, and we write its maps
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if spec["mode"] == "userns":
        flags |= CLONE_NEWUSER
    _check(libc.unshare(flags), "unshare")
    if spec["mode"] == "userns":
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    pid = os.fork()
    if pid == 0:
        try:
            sample_init(spec)
        finally:
            os._exit(125)
    _, status = os.waitpid(pid, 0)
    os._exit(exit_code(status))


if __name__ == "__main__":
    main()
