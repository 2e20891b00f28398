//! Asks the kernel, from inside a container, whether an operation is allowed, and answers with
//! an errno name (`EPERM`) or `ok`. The tests use it to assert exact errnos; the `eci-probe`
//! binary and `eci-run` (run as `eci-probe`) expose it to users.
//!
//! ```text
//! eci-probe syscall init_module|finit_module|delete_module|kexec_load|iopl|ioperm|swapon|
//!                   swapoff|acct|settimeofday|clock_settime|open_by_handle_at|bpf|keyctl|
//!                   syslog|perf_event_open|quotactl|quotactl_fd|lookup_dcookie|vhangup|
//!                   fsopen|open_tree|mount_setattr|io_uring_setup
//!                                                 the syscall with zero arguments
//! eci-probe socket FAMILY                         socket(FAMILY, SOCK_STREAM, 0); FAMILY may
//!                                                 carry bits above the 32 the kernel reads
//! eci-probe mount SOURCE TARGET FSTYPE [DATA]     new filesystem
//! eci-probe mount-ro SOURCE TARGET FSTYPE         new filesystem, read-only
//! eci-probe bind SOURCE TARGET                    bind mount
//! eci-probe rbind SOURCE TARGET                   recursive bind mount
//! eci-probe move SOURCE TARGET                    move a mount
//! eci-probe remount-fs TARGET DATA                remount the filesystem with options DATA
//! eci-probe remount-rw TARGET [FLAGS] | remount-ro TARGET [FLAGS]
//!                                                 per-mount flags (MS_REMOUNT|MS_BIND), plus
//!                                                 FLAGS such as nosuid,nodev,noexec
//! eci-probe umount TARGET [detach]
//! eci-probe seccomp-listener                      try to install a competing notifier
//! eci-probe sysinfo-uptime                        sysinfo(2)'s uptime in seconds, or the errno
//! eci-probe sysinfo-readonly                      sysinfo(2) into a read-only page: the errno
//! eci-probe fuse-pid DIR                          mount a FUSE server at DIR, look a file up:
//!                                                 "same" if the server was told this process's
//!                                                 PID as it sees it, else both numbers
//! eci-probe fuse-ptmx DIR RESULT                 mount a FUSE server at DIR whose file answers
//!                                                 every ioctl RESULT, bind it over /dev/pts/ptmx,
//!                                                 print "ready" and serve until killed
//! eci-probe mount-fuse-page DIR [GO]             mount(2) whose every string lies in a page of
//!                                                 a FUSE server at DIR that never answers a
//!                                                 read: prints "mapped", waits for file GO to
//!                                                 exist if named, then calls; the answer
//! eci-probe sysinfo-fuse DIR                       sysinfo(2) into a page of a FUSE server at DIR
//!                                                 that never answers a read: prints "mapped",
//!                                                 then the answer
//! eci-probe private TARGET                        make a mount private
//! eci-probe mount-fd SOURCE TARGET FSTYPE         mount, naming TARGET as /proc/self/fd/N of
//!                                                 an O_PATH descriptor (as runc and crun do)
//! eci-probe bind-fd SOURCE TARGET                 bind, naming both so
//! eci-probe umount-fd TARGET                      umount2, naming TARGET so
//! eci-probe remount-rw-fd TARGET                  bind remount read-write, naming TARGET so
//! eci-probe bench-mount N DIR [relay]             time N tmpfs mount+umount pairs on DIR:
//!                                                 "p50 p99 mean" in microseconds; with
//!                                                 `relay`, a forked child makes each call
//!                                                 for the prober, asked through a pipe
//! eci-probe bench-getppid N [allow-all]          median ns per getppid over 21 rounds of N
//!                                                 calls, optionally under an extra allow-all
//!                                                 seccomp filter
//! eci-probe bench-personality N                 median ns per personality(0xffffffff), a
//!                                                 call Docker's profile filters by argument
//! eci-probe write FILE VALUE                     write VALUE to FILE in one write(2)
//! eci-probe bench-read FILE MILLIS               open+read+close of FILE for MILLIS ms:
//!                                                 "reads/s"
//! eci-probe http SOCKET METHOD TARGET             one HTTP/1.1 request on a Unix socket: the
//!                                                 response's status line
//! eci-probe bench-http SOCKET TARGET N          N keep-alive GET requests of TARGET on one
//!                                                 connection: "p50 p99 mean" in microseconds
//! eci-probe churn-mount MILLIS DIR               tmpfs mount+umount pairs on DIR for MILLIS ms:
//!                                                 how often each call answered what, as
//!                                                 "mount:ok=N umount:ok=N ..." sorted
//! eci-probe mount-runs MILLIS DIR                tmpfs mount+umount pairs on DIR for MILLIS ms:
//!                                                 the mounts' answers in order, as runs
//!                                                 ("ENOSYS*12 ok*3400")
//! eci-probe ns NAME                             the namespace /proc/self/ns/NAME links to
//! eci-probe packet-socket                        open an AF_PACKET raw socket (a sniffer's)
//! eci-probe link-up NAME                         bring a network interface up (SIOCSIFFLAGS)
//! eci-probe sethostname NAME                     set the UTS namespace's hostname
//! eci-probe tcp-accept PORT                      listen on 127.0.0.1:PORT, print "listening",
//!                                                 then accept one connection: "accepted"
//! eci-probe tcp-connect PORT                     connect to 127.0.0.1:PORT
//! eci-probe keep-renaming DIR NAME               rename DIR/NAME to NAME.1, NAME.2, ... until
//!                                                 killed (or a rename fails: its errno)
//! eci-probe i386-mount DIR                        mount a tmpfs on DIR through the i386 entry
//!                                                 (`int 0x80`, number 21: access(2) in the
//!                                                 x86-64 numbering); "unsupported" elsewhere
//! eci-probe leader-exits SECONDS                  print "ok", then end the main thread alone
//!                                                 while another sleeps SECONDS (a zombie
//!                                                 leader of a live process)
//! eci-probe stack-mounts N DIR                   up to N tmpfs mounts stacked on DIR, kept:
//!                                                 "COUNT ok", or "COUNT ERRNO" at the first
//!                                                 that failed
//! eci-probe race-fstype N DIR                     N mounts on DIR whose type a second thread
//!                                                 flips between tmpfs and ramfs meanwhile:
//!                                                 "tmpfs T ramfs R refused E"
//! ```
//! Several commands may be joined with `,` as separate arguments: `eci-probe umount /a , umount /b`.
//!
//! ```
//! assert_eq!(eci::probe::run(&["no-such-command"]), "usage error: [\"no-such-command\"]");
//! ```

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd};

fn answer(ret: libc::c_long) -> String {
    if ret == -1 {
        format!("{:?}", nix::errno::Errno::last())
    } else {
        "ok".to_string()
    }
}

fn errno_name(err: &std::io::Error) -> String {
    err.raw_os_error().map_or_else(
        || err.to_string(),
        |e| format!("{:?}", nix::errno::Errno::from_raw(e)),
    )
}

fn c(s: &str) -> CString {
    CString::new(s).expect("arguments have no NUL")
}

/// Opens each of `paths` O_PATH and runs `call` with them named `/proc/self/fd/N`.
fn by_descriptor(paths: &[&str], call: impl FnOnce(&[String]) -> String) -> String {
    let mut fds = Vec::new();
    for path in paths {
        // SAFETY: a valid NUL-terminated path.
        let fd = unsafe { libc::open(c(path).as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return errno_name(&std::io::Error::last_os_error());
        }
        // SAFETY: open returned a new descriptor that we now own.
        fds.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    }
    let named: Vec<String> = fds
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect();
    call(&named)
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> String {
    let (source, target, fstype, data) = (source.map(c), c(target), fstype.map(c), data.map(c));
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is NULL or a valid NUL-terminated string.
    answer(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    } as libc::c_long)
}

/// Mounts a FUSE filesystem at `target` over a fresh /dev/fuse descriptor, as fusermount
/// does, and closes the descriptor (accesses then fail with ENOTCONN, nothing hangs); with
/// `hold`, keeps it open and never answers, printing the answer first: every access under
/// `target` then waits until this process is killed.
fn fuse_mount(target: &str, hold: bool) -> String {
    match mount_fuse(target, "eci-probe") {
        Ok(_device) if hold => {
            println!("ok");
            loop {
                std::thread::park();
            }
        }
        Ok(_) => "ok".to_string(),
        Err(answer) => answer,
    }
}

/// Opens /dev/fuse and mounts a FUSE filesystem of type `fuse.NAME` at `target` over it, as
/// fusermount does: the device, or the mount's answer (an errno name) or why the device did
/// not open.
fn mount_fuse(target: &str, name: &str) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|err| format!("open /dev/fuse: {err}"))?;
    // allow_other: users other than the mounter's (a process of uid 1000) reach it too.
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
        device.as_raw_fd()
    );
    let fstype = format!("fuse.{name}");
    match mount(Some(name), target, Some(&fstype), 0, Some(&data)) {
        answer if answer == "ok" => Ok(device),
        answer => Err(answer),
    }
}

/// Mounts a FUSE filesystem at `dir` whose server (a thread here) answers everything but
/// reads, and maps a page of its one file `f` private, with `protection`: whoever faults the
/// page in waits for the server, which never answers. Prints "mapped" once done; the reason
/// as the error otherwise.
fn map_stalled_fuse_page(dir: &str, protection: libc::c_int) -> Result<*mut libc::c_void, String> {
    use std::os::fd::AsRawFd;
    let device = mount_fuse(dir, "stall").map_err(|answer| format!("mount: {answer}"))?;
    std::thread::spawn(move || serve_all_but_reads(&device, None, None));
    let file = std::fs::File::open(format!("{dir}/f")).map_err(|err| format!("open: {err}"))?;
    // SAFETY: a fresh private mapping of an open file; nothing else refers to it.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            protection,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    println!("mapped");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    Ok(page)
}

/// Asks sysinfo(2) to write into a page of a stalled FUSE server ([`map_stalled_fuse_page`]):
/// an answer written from outside would wait for the server.
fn sysinfo_into_stalled_fuse(dir: &str) -> String {
    match map_stalled_fuse_page(dir, libc::PROT_READ | libc::PROT_WRITE) {
        // SAFETY: the mapping is a page, larger than a sysinfo, and stays mapped.
        Ok(page) => answer(unsafe { libc::sysinfo(page.cast()) } as libc::c_long),
        Err(why) => why,
    }
}

/// Calls mount(2) with every string in a page of a stalled FUSE server
/// ([`map_stalled_fuse_page`]), once file `go` exists if named: reading them from outside
/// waits for the server.
fn mount_from_stalled_fuse(dir: &str, go: Option<&str>) -> String {
    match map_stalled_fuse_page(dir, libc::PROT_READ) {
        Ok(page) => {
            while go.is_some_and(|go| !std::path::Path::new(go).exists()) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let strings = page as *const libc::c_char;
            // SAFETY: the pointers name a mapped page; what they hold is the kernel's to judge.
            let mounted = unsafe { libc::mount(strings, strings, strings, 0, std::ptr::null()) };
            answer(mounted as libc::c_long)
        }
        Err(why) => why,
    }
}

/// Calls sysinfo(2) on a page a userfaultfd of this process's own watches for missing pages and
/// never resolves, after printing "registered": whoever writes the answer there waits until
/// the descriptor is gone (this process with it). Needs a userfaultfd that handles faults of
/// the kernel too, which takes CAP_SYS_PTRACE, or `vm.unprivileged_userfaultfd=1`.
fn sysinfo_into_unresolved_userfault() -> String {
    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    #[repr(C)]
    struct UffdioRegister {
        start: u64,
        len: u64,
        mode: u64,
        ioctls: u64,
    }
    const UFFD_API: u64 = 0xAA;
    const UFFDIO_API: libc::Ioctl = libc::_IOWR::<UffdioApi>(0xAA, 0x3F);
    const UFFDIO_REGISTER: libc::Ioctl = libc::_IOWR::<UffdioRegister>(0xAA, 0x00);
    const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
    // SAFETY: userfaultfd takes a flag word.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    if fd < 0 {
        return format!("userfaultfd: {}", std::io::Error::last_os_error());
    }
    let fd = fd as libc::c_int;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: a valid uffdio_api for the descriptor just made.
    if unsafe { libc::ioctl(fd, UFFDIO_API, &mut api) } < 0 {
        return format!("UFFDIO_API: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh anonymous page, never touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return format!("mmap: {}", std::io::Error::last_os_error());
    }
    let mut register = UffdioRegister {
        start: page as u64,
        len: 4096,
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: a valid uffdio_register naming the page just mapped.
    if unsafe { libc::ioctl(fd, UFFDIO_REGISTER, &mut register) } < 0 {
        return format!("UFFDIO_REGISTER: {}", std::io::Error::last_os_error());
    }
    println!("registered");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: the mapping is a page, larger than a sysinfo, and stays mapped.
    answer(unsafe { libc::sysinfo(page.cast()) } as libc::c_long)
}

/// Mounts a FUSE filesystem at `dir` whose server answers everything but reads, prints "ok"
/// and serves until killed: a process that executes its file `f` is held in the kernel for
/// good once the server has read its request, a SIGKILL notwithstanding.
fn stalled_fuse(dir: &str) -> String {
    let device = match mount_fuse(dir, "stall") {
        Ok(device) => device,
        Err(answer) => return format!("mount: {answer}"),
    };
    std::thread::spawn(move || serve_all_but_reads(&device, None, None));
    println!("ok");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::park();
    }
}

/// Mounts a FUSE filesystem at `dir` and looks its file up: "same" if the server was told the
/// PID of this process as this process sees it, else the two numbers.
fn fuse_request_pid(dir: &str) -> String {
    let device = match mount_fuse(dir, "pid") {
        Ok(device) => device,
        Err(answer) => return format!("mount: {answer}"),
    };
    let (told, lookups) = std::sync::mpsc::channel();
    std::thread::spawn(move || serve_all_but_reads(&device, Some(told), None));
    if let Err(err) = std::fs::metadata(format!("{dir}/f")) {
        return format!("stat: {err}");
    }
    let own = std::process::id();
    match lookups.recv_timeout(std::time::Duration::from_secs(5)) {
        Ok(pid) if pid == own => "same".to_string(),
        Ok(pid) => format!("told {pid}, is {own}"),
        Err(_) => "no lookup".to_string(),
    }
}

/// Mounts a FUSE filesystem at `dir` whose file answers every ioctl with `result`, binds the
/// file over /dev/pts/ptmx, prints "ready" and serves until killed: a process that opens
/// the container's ptmx and asks it for its pty's peer (TIOCGPTPEER) is told `result` as the
/// peer's descriptor number.
fn fake_ptmx(dir: &str, result: &str) -> String {
    let Ok(result) = result.parse::<i32>() else {
        return format!("bad result {result}");
    };
    let device = match mount_fuse(dir, "ptmx") {
        Ok(device) => device,
        Err(answer) => return format!("mount: {answer}"),
    };
    std::thread::spawn(move || serve_all_but_reads(&device, None, Some(result)));
    let bound = mount(
        Some(&format!("{dir}/f")),
        "/dev/pts/ptmx",
        None,
        libc::MS_BIND,
        None,
    );
    if bound != "ok" {
        return format!("bind: {bound}");
    }
    println!("ready");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// The FUSE server of [`sysinfo_into_stalled_fuse`], [`fuse_request_pid`] and [`fake_ptmx`]:
/// a root directory holding one 4 KiB file `f` (node 2); every read is left unanswered. The
/// PID each lookup names goes to `lookups`; an ioctl is answered `ioctl_result` if given.
fn serve_all_but_reads(
    device: &std::fs::File,
    lookups: Option<std::sync::mpsc::Sender<u32>>,
    ioctl_result: Option<i32>,
) {
    use std::io::{Read, Write};
    const LOOKUP: u32 = 1;
    const FORGET: u32 = 2;
    const GETATTR: u32 = 3;
    const OPEN: u32 = 14;
    const READ: u32 = 15;
    const INIT: u32 = 26;
    const INTERRUPT: u32 = 36;
    const IOCTL: u32 = 39;
    const BATCH_FORGET: u32 = 42;
    // fuse_attr: ino, size, blocks, three times, their nanoseconds, mode, nlink, uid, gid,
    // rdev, blksize, flags.
    let attr = |node: u64| -> Vec<u8> {
        let (size, mode, nlink) = match node {
            1 => (0u64, libc::S_IFDIR | 0o755, 2u32),
            _ => (4096, libc::S_IFREG | 0o755, 1),
        };
        let mut out = Vec::new();
        for word in [node, size, size / 512, 0, 0, 0] {
            out.extend(word.to_ne_bytes());
        }
        for word in [0u32, 0, 0, mode, nlink, 0, 0, 0, 4096, 0] {
            out.extend(word.to_ne_bytes());
        }
        out
    };
    let mut buf = vec![0u8; (1 << 20) + 4096];
    let mut device = device;
    loop {
        let Ok(len) = device.read(&mut buf) else {
            return;
        };
        if len < 40 {
            return;
        }
        let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap());
        let (opcode, unique) = (word(4), u64::from_ne_bytes(buf[8..16].try_into().unwrap()));
        let node = u64::from_ne_bytes(buf[16..24].try_into().unwrap());
        if opcode == LOOKUP {
            if let Some(lookups) = &lookups {
                let _ = lookups.send(word(32));
            }
        }
        let (error, body): (i32, Vec<u8>) = match opcode {
            READ | FORGET | BATCH_FORGET | INTERRUPT => continue,
            INIT => {
                // fuse_init_out, 64 bytes: version 7.31, no flags, 4 KiB writes.
                let mut out = Vec::new();
                for word in [7u32, 31, 0, 0] {
                    out.extend(word.to_ne_bytes());
                }
                out.extend([0u8; 4]);
                out.extend(4096u32.to_ne_bytes());
                out.extend(1u32.to_ne_bytes());
                out.resize(64, 0);
                (0, out)
            }
            LOOKUP if node == 1 && buf[40..len].starts_with(b"f\0") => {
                // fuse_entry_out: node, generation, validities, then the attributes.
                let mut out = Vec::new();
                for word in [2u64, 0, 60, 60] {
                    out.extend(word.to_ne_bytes());
                }
                out.extend([0u8; 8]);
                out.extend(attr(2));
                (0, out)
            }
            LOOKUP => (-libc::ENOENT, Vec::new()),
            GETATTR => {
                let mut out = Vec::new();
                out.extend(60u64.to_ne_bytes());
                out.extend([0u8; 8]);
                out.extend(attr(node));
                (0, out)
            }
            // fuse_open_out: handle and flags, none: reads go through the page cache.
            OPEN => (0, vec![0u8; 16]),
            // fuse_ioctl_out: the result, then no flags and no data either way.
            IOCTL if ioctl_result.is_some() => {
                let mut out = ioctl_result.unwrap_or(0).to_ne_bytes().to_vec();
                out.resize(16, 0);
                (0, out)
            }
            _ => (-libc::ENOSYS, Vec::new()),
        };
        let mut reply = Vec::with_capacity(16 + body.len());
        reply.extend(((16 + body.len()) as u32).to_ne_bytes());
        reply.extend(error.to_ne_bytes());
        reply.extend(unique.to_ne_bytes());
        reply.extend(body);
        if device.write(&reply).is_err() {
            return;
        }
    }
}

fn syscall(name: &str) -> String {
    let nr = match name {
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "kexec_load" => libc::SYS_kexec_load,
        #[cfg(target_arch = "x86_64")]
        "kexec_file_load" => libc::SYS_kexec_file_load,
        #[cfg(target_arch = "x86_64")]
        "iopl" => libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        "ioperm" => libc::SYS_ioperm,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "acct" => libc::SYS_acct,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "bpf" => libc::SYS_bpf,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "syslog" => libc::SYS_syslog,
        "perf_event_open" => libc::SYS_perf_event_open,
        "quotactl" => libc::SYS_quotactl,
        "quotactl_fd" => 443,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "vhangup" => libc::SYS_vhangup,
        "fsopen" => libc::SYS_fsopen,
        "open_tree" => libc::SYS_open_tree,
        "mount_setattr" => libc::SYS_mount_setattr,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "move_mount" => libc::SYS_move_mount,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        other => return format!("unknown syscall {other}"),
    };
    // Harmless arguments: zeroes and null pointers. The filter answers before the kernel looks.
    // SAFETY: every argument is zero, which no syscall here dereferences before failing.
    answer(unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) })
}

/// socket(2) of `family` (a number, which may carry bits above the 32 the kernel reads) and
/// SOCK_STREAM; the socket is closed at once.
fn socket(family: &str) -> String {
    let Ok(family) = family.parse::<u64>() else {
        return format!("bad family {family}");
    };
    // SAFETY: socket takes integers; the descriptor it returns is closed here.
    let fd = unsafe { libc::syscall(libc::SYS_socket, family, libc::SOCK_STREAM, 0) };
    if fd >= 0 {
        // SAFETY: a descriptor this function just got.
        unsafe { libc::close(fd as i32) };
    }
    answer(fd)
}

/// Installs a filter that allows everything, the cheapest filter there is, with `flags`.
fn install_allow_all_with(flags: libc::c_ulong) -> libc::c_long {
    let filter = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: prctl and seccomp with a valid one-instruction program.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::syscall(
            libc::SYS_seccomp,
            1,
            flags,
            &prog as *const libc::sock_fprog,
        )
    }
}

fn install_allow_all() -> nix::Result<()> {
    nix::errno::Errno::result(install_allow_all_with(0)).map(drop)
}

/// The median, over 21 rounds, of the mean time of one getppid in a round of `n`.
fn bench_getppid(n: u32) -> String {
    // SAFETY: getppid has no arguments and cannot fail.
    bench_calls(n, || unsafe { libc::syscall(libc::SYS_getppid) })
}

/// personality(2) asked for the current persona: a call Docker's default profile allows only
/// for some arguments, so the kernel runs the filters for it rather than a cached answer.
fn bench_personality(n: u32) -> String {
    // SAFETY: 0xffffffff only reads the persona.
    bench_calls(n, || unsafe {
        libc::syscall(libc::SYS_personality, 0xffff_ffffu64)
    })
}

/// Median nanoseconds a call of 21 rounds of `n` calls.
fn bench_calls(n: u32, call: impl Fn() -> libc::c_long) -> String {
    let mut rounds: Vec<f64> = (0..21)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(call());
            }
            start.elapsed().as_nanos() as f64 / f64::from(n.max(1))
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    format!("{:.1}", rounds[rounds.len() / 2])
}

/// sysinfo(2)'s uptime (what `uptime` and `free` ask), or the errno name.
fn sysinfo_uptime() -> String {
    // SAFETY: an all-zero sysinfo is valid for the kernel to fill.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: info is a valid out pointer.
    if unsafe { libc::sysinfo(&mut info) } == 0 {
        info.uptime.to_string()
    } else {
        errno_name(&std::io::Error::last_os_error())
    }
}
/// sysinfo(2) given a page mapped read-only: the errno name (the kernel's is EFAULT), or `ok`
/// if the answer was written there all the same.
fn sysinfo_readonly() -> String {
    let size = std::mem::size_of::<libc::sysinfo>();
    // SAFETY: a fresh anonymous mapping; nothing else refers to it.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096.max(size),
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return errno_name(&std::io::Error::last_os_error());
    }
    // SAFETY: page is a mapping of at least size bytes; the kernel checks it may write there.
    let answered = answer(unsafe { libc::sysinfo(page.cast()) } as libc::c_long);
    // SAFETY: page was mapped above with this length.
    unsafe { libc::munmap(page, 4096.max(size)) };
    answered
}

fn seccomp_listener() -> String {
    answer(install_allow_all_with(
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    ))
}

/// Extra per-mount flags named by a comma-separated list.
fn flags(list: &str) -> libc::c_ulong {
    list.split(',')
        .map(|f| match f {
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            _ => 0,
        })
        .fold(0, |acc, f| acc | f)
}

fn port_of(text: &str) -> u16 {
    text.parse().unwrap_or(0)
}

/// Sets IFF_UP on interface `name`, as `ip link set NAME up` does.
fn link_up(name: &str) -> String {
    // SAFETY: an ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return "ENAMETOOLONG".to_string();
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: socket takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return answer(-1);
    }
    // SAFETY: request is a valid ifreq naming the interface; fd is the socket opened above.
    let got = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) };
    let set = if got < 0 {
        -1
    } else {
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as above.
        unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) }
    };
    let result = answer(set as libc::c_long);
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    result
}

/// Listens on loopback, says so, and accepts one connection.
fn tcp_accept(port: &str) -> String {
    use std::io::Write;
    let listener = match std::net::TcpListener::bind(("127.0.0.1", port_of(port))) {
        Ok(listener) => listener,
        Err(err) => return errno_name(&err),
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    match listener.accept() {
        Ok(_) => "accepted".to_string(),
        Err(err) => errno_name(&err),
    }
}

/// Runs one probe command and returns its answer.
pub fn run(args: &[&str]) -> String {
    let bind = libc::MS_BIND;
    let remount = libc::MS_REMOUNT | bind;
    match args {
        ["syscall", name] => syscall(name),
        ["socket", family] => socket(family),
        ["mount", source, target, fstype] => mount(Some(source), target, Some(fstype), 0, None),
        ["mount", source, target, fstype, data] => {
            mount(Some(source), target, Some(fstype), 0, Some(data))
        }
        ["mount-ro", source, target, fstype] => {
            mount(Some(source), target, Some(fstype), libc::MS_RDONLY, None)
        }
        ["fuse", target] => fuse_mount(target, false),
        ["fuse-hold", target] => fuse_mount(target, true),
        ["fuse-stall", dir] => stalled_fuse(dir),
        ["sysinfo-fuse", dir] => sysinfo_into_stalled_fuse(dir),
        ["mount-fuse-page", dir] => mount_from_stalled_fuse(dir, None),
        ["mount-fuse-page", dir, go] => mount_from_stalled_fuse(dir, Some(go)),
        ["sysinfo-uffd"] => sysinfo_into_unresolved_userfault(),
        ["fuse-pid", dir] => fuse_request_pid(dir),
        ["fuse-ptmx", dir, result] => fake_ptmx(dir, result),
        ["bind", source, target] => mount(Some(source), target, None, bind, None),
        ["rbind", source, target] => mount(Some(source), target, None, bind | libc::MS_REC, None),
        ["move", source, target] => mount(Some(source), target, None, libc::MS_MOVE, None),
        ["remount-rw", target] => mount(None, target, None, remount, None),
        ["remount-rw", target, extra] => mount(None, target, None, remount | flags(extra), None),
        ["remount-ro", target] => mount(None, target, None, remount | libc::MS_RDONLY, None),
        // A remount of the filesystem (not of the bind), which reads new options.
        ["remount-fs", target, data] => mount(None, target, None, libc::MS_REMOUNT, Some(data)),
        ["remount-ro", target, extra] => mount(
            None,
            target,
            None,
            remount | libc::MS_RDONLY | flags(extra),
            None,
        ),
        ["private", target] => mount(None, target, None, libc::MS_PRIVATE, None),
        ["mount-fd", source, target, fstype] => by_descriptor(&[target], |paths| {
            mount(Some(source), &paths[0], Some(fstype), 0, None)
        }),
        ["bind-fd", source, target] => by_descriptor(&[source, target], |paths| {
            mount(Some(&paths[0]), &paths[1], None, bind, None)
        }),
        ["umount-fd", target] => by_descriptor(&[target], |paths| {
            // SAFETY: a valid NUL-terminated path.
            answer(unsafe { libc::umount2(c(&paths[0]).as_ptr(), 0) } as libc::c_long)
        }),
        ["remount-rw-fd", target] => by_descriptor(&[target], |paths| {
            mount(None, &paths[0], None, remount, None)
        }),
        ["umount", target] => {
            // SAFETY: a valid NUL-terminated path.
            answer(unsafe { libc::umount2(c(target).as_ptr(), 0) } as libc::c_long)
        }
        ["umount", target, "detach"] => {
            // SAFETY: a valid NUL-terminated path.
            answer(unsafe { libc::umount2(c(target).as_ptr(), libc::MNT_DETACH) } as libc::c_long)
        }
        // SAFETY: unshare with a flag word.
        ["unshare-user"] => answer(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as libc::c_long),
        ["setns-user", path] => match std::fs::File::open(path) {
            // SAFETY: setns on a descriptor we hold.
            Ok(ns) => answer(unsafe { libc::setns(ns.as_raw_fd(), 0) } as libc::c_long),
            Err(err) => errno_name(&err),
        },
        ["seccomp-listener"] => seccomp_listener(),
        ["ns", name] => match std::fs::read_link(format!("/proc/self/ns/{name}")) {
            Ok(target) => target.display().to_string(),
            Err(err) => errno_name(&err),
        },
        // SAFETY: socket takes plain integers; the descriptor is closed at once.
        ["packet-socket"] => match unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) } {
            -1 => answer(-1),
            fd => {
                // SAFETY: fd was just opened here.
                unsafe { libc::close(fd) };
                answer(0)
            }
        },
        ["sethostname", name] => {
            // SAFETY: name points to name.len() readable bytes.
            answer(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } as libc::c_long)
        }
        ["link-up", name] => link_up(name),
        ["tcp-accept", port] => tcp_accept(port),
        ["tcp-connect", port] => match std::net::TcpStream::connect(("127.0.0.1", port_of(port))) {
            Ok(_) => "ok".to_string(),
            Err(err) => errno_name(&err),
        },
        ["sysinfo-uptime"] => sysinfo_uptime(),
        ["sysinfo-readonly"] => sysinfo_readonly(),
        ["bench-getppid", n] => match n.parse() {
            Ok(n) => bench_getppid(n),
            Err(_) => format!("usage error: {n} is not a count"),
        },
        ["bench-personality", n] => match n.parse() {
            Ok(n) => bench_personality(n),
            Err(_) => format!("usage error: {n} is not a count"),
        },
        ["bench-getppid", n, "allow-all"] => match (n.parse(), install_allow_all()) {
            (Ok(n), Ok(())) => bench_getppid(n),
            (Err(_), _) => format!("usage error: {n} is not a count"),
            (_, Err(errno)) => format!("{errno:?}"),
        },
        ["write", file, value] => match std::fs::OpenOptions::new().write(true).open(file) {
            Ok(mut f) => match std::io::Write::write(&mut f, value.as_bytes()) {
                Ok(_) => "ok".to_string(),
                Err(err) => errno_name(&err),
            },
            Err(err) => errno_name(&err),
        },
        ["bench-read", file, millis] => match millis.parse() {
            Ok(millis) => bench_read(file, millis),
            Err(_) => format!("usage error: {millis} is not a number of milliseconds"),
        },
        ["race-fstype", n, dir] => match n.parse() {
            Ok(n) => race_fstype(n, dir),
            Err(_) => format!("usage error: {n} is not a count"),
        },
        ["http", socket, method, target] => http(socket, method, target, None),
        ["http", socket, method, target, body] => http(
            socket,
            method,
            target,
            Some(*body).filter(|b| !b.is_empty()),
        ),
        ["bench-http", socket, target, n] => match n.parse() {
            Ok(n) => bench_http(socket, target, n),
            Err(_) => format!("usage error: {n} is not a count"),
        },
        ["mount-runs", millis, dir] => match millis.parse() {
            Ok(millis) => mount_runs(millis, dir),
            Err(_) => format!("usage error: {millis} is not a number of milliseconds"),
        },
        ["churn-mount", millis, dir] => match millis.parse() {
            Ok(millis) => churn_mount(millis, dir),
            Err(_) => format!("usage error: {millis} is not a number of milliseconds"),
        },
        ["bench-mount", n, dir] => match n.parse() {
            Ok(n) => bench_mount(n, dir, &mut MountCalls::Own),
            Err(_) => format!("usage error: {n} is not a count"),
        },
        ["bench-mount", n, dir, "relay"] => match (n.parse(), Relay::start(dir)) {
            (Ok(n), Ok(mut relay)) => bench_mount(n, dir, &mut MountCalls::Relayed(&mut relay)),
            (Err(_), _) => format!("usage error: {n} is not a count"),
            (_, Err(err)) => errno_name(&err),
        },
        ["keep-renaming", dir, name] => keep_renaming(dir, name),
        ["i386-mount", dir] => i386_mount(dir),
        ["leader-exits", seconds] => match seconds.parse() {
            Ok(seconds) => leader_exits(seconds),
            Err(_) => format!("usage error: {seconds} is not a number of seconds"),
        },
        ["stack-mounts", n, dir] => match n.parse() {
            Ok(n) => stack_mounts(n, dir),
            Err(_) => format!("usage error: {n} is not a count"),
        },
        other => format!("usage error: {other:?}"),
    }
}

/// Renames `dir/name` to `name.1`, `name.2`, ... without end: a cgroup whose name never holds
/// still. Returns only when a rename fails.
fn keep_renaming(dir: &str, name: &str) -> String {
    let dir = std::path::Path::new(dir);
    let mut current = dir.join(name);
    for n in 1u64.. {
        let next = dir.join(format!("{name}.{n}"));
        if let Err(err) = std::fs::rename(&current, &next) {
            return errno_name(&err);
        }
        current = next;
    }
    "ok".into()
}

/// mount(2) of a tmpfs on `dir` through the i386 system call entry, whose numbers a filter
/// that read them as x86-64 ones would take for others (21 is access(2) there): "ok" or the
/// errno.
#[cfg(target_arch = "x86_64")]
fn i386_mount(dir: &str) -> String {
    const I386_MOUNT: i32 = 21;
    // The i386 entry takes 32-bit pointers: the strings go in a page below 4 GiB.
    // SAFETY: an anonymous mapping, checked below before use.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return errno_name(&std::io::Error::last_os_error());
    }
    let strings = [b"none".as_slice(), dir.as_bytes(), b"tmpfs"];
    if strings.iter().map(|s| s.len() + 1).sum::<usize>() > 4096 {
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(page, 4096) };
        return "usage error: the path is too long".into();
    }
    let mut addresses = [0u64; 3];
    let mut offset = 0;
    for (string, address) in strings.iter().zip(&mut addresses) {
        // SAFETY: the page is 4096 writable bytes and the strings with their NULs fit (checked
        // above); the mapping is zeroed, so each string ends with a NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(
                string.as_ptr(),
                page.cast::<u8>().add(offset),
                string.len(),
            )
        };
        *address = page as u64 + offset as u64;
        offset += string.len() + 1;
    }
    let result: i32;
    // SAFETY: int 0x80 with the i386 mount's arguments: three NUL-terminated strings in the
    // page below 4 GiB, no flags, no data. rbx, which the compiler reserves, is swapped in and
    // back around the call.
    unsafe {
        std::arch::asm!(
            "xchg {source}, rbx",
            "int 0x80",
            "xchg {source}, rbx",
            source = inout(reg) addresses[0] => _,
            inlateout("eax") I386_MOUNT => result,
            in("ecx") addresses[1] as u32,
            in("edx") addresses[2] as u32,
            in("esi") 0u32,
            in("edi") 0u32,
        );
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(page, 4096) };
    match result {
        0 => "ok".into(),
        negative => format!("{:?}", nix::errno::Errno::from_raw(-negative)),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn i386_mount(_dir: &str) -> String {
    "unsupported".into()
}

/// Ends the main thread alone (exit(2), not exit_group) once another thread that sleeps
/// `seconds` runs: the process lives on with a zombie leader. Prints "ok" first.
fn leader_exits(seconds: u64) -> String {
    let _sleeper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(seconds));
        std::process::exit(0);
    });
    println!("ok");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // SAFETY: exit(2) ends this thread only; nothing of it is used after.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("exit(2) returned")
}

/// Stacks up to `n` tmpfs mounts on `dir` (each a superblock of its own the kernel allocates),
/// stopping at the first failure: how many were made, and "ok" or the failure's errno.
fn stack_mounts(n: usize, dir: &str) -> String {
    for made in 0..n {
        let answer = mount(Some("none"), dir, Some("tmpfs"), 0, None);
        if answer != "ok" {
            return format!("{made} {answer}");
        }
    }
    format!("{n} ok")
}

/// Who makes the benchmark's mount calls.
enum MountCalls<'r> {
    /// The prober itself.
    Own,
    /// A child, asked through a pipe: what any design that mounts out of process pays for
    /// the hand-over and for the scheduler's placement, with no seccomp and no vetting.
    Relayed(&'r mut Relay),
}

impl MountCalls<'_> {
    /// Mounts a tmpfs on `target` (`true`) or unmounts it; errno 0 on success.
    fn call(&mut self, target: &CString, mount: bool) -> i32 {
        match self {
            MountCalls::Own => mount_or_unmount(target, mount),
            MountCalls::Relayed(relay) => relay.call(mount),
        }
    }
}

/// Mounts a tmpfs on `target` or unmounts it: errno 0 on success. Allocation-free.
fn mount_or_unmount(target: &CString, mount: bool) -> i32 {
    // SAFETY: NUL-terminated strings and a null data pointer.
    let done = unsafe {
        if mount {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        } else {
            libc::umount2(target.as_ptr(), 0)
        }
    };
    if done == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }
}

/// A forked child that mounts or unmounts one target on request: one byte asks (`m` or `u`),
/// four bytes answer the errno. It ends when the prober's end of the request pipe closes.
struct Relay {
    /// `None` once dropped, which ends the child.
    ask: Option<std::io::PipeWriter>,
    answers: std::io::PipeReader,
    child: libc::pid_t,
}

impl Relay {
    fn start(dir: &str) -> std::io::Result<Relay> {
        let target = c(dir);
        let (requests, ask) = std::io::pipe()?;
        let (answers, answer) = std::io::pipe()?;
        // SAFETY: eci-probe is single-threaded; the child makes only read, mount, umount2,
        // write and _exit calls on what was made before the fork.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if child == 0 {
            // SAFETY: the descriptors are open; the child exits without unwinding.
            unsafe {
                libc::close(ask.as_raw_fd());
                let mut byte = 0u8;
                while libc::read(requests.as_raw_fd(), (&raw mut byte).cast(), 1) == 1 {
                    let errno = mount_or_unmount(&target, byte == b'm');
                    libc::write(answer.as_raw_fd(), (&raw const errno).cast(), 4);
                }
                libc::_exit(0)
            }
        }
        Ok(Relay {
            ask: Some(ask),
            answers,
            child,
        })
    }

    fn call(&mut self, mount: bool) -> i32 {
        use std::io::{Read, Write};
        let mut errno = [0u8; 4];
        let Some(ask) = self.ask.as_mut() else {
            return libc::EPIPE;
        };
        let asked = ask.write_all(if mount { b"m" } else { b"u" });
        match asked.and_then(|()| self.answers.read_exact(&mut errno)) {
            Ok(()) => i32::from_ne_bytes(errno),
            Err(err) => err.raw_os_error().unwrap_or(libc::EPIPE),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The child ends when the request pipe closes.
        drop(self.ask.take());
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.child, &mut status, 0) };
    }
}

/// Times `n` mount+umount pairs of a tmpfs on `dir`, made by `calls`: "p50 p99 mean" of the
/// pairs, then the p50 of the mount alone and of an umount that fails at once, in
/// microseconds; or the first error.
fn bench_mount(n: usize, dir: &str, calls: &mut MountCalls<'_>) -> String {
    let micros = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1e6;
    let target = c(dir);
    let failed = |errno: i32| format!("{:?}", nix::errno::Errno::from_raw(errno));
    let (mut pairs, mut mounts, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n.max(1) {
        let start = std::time::Instant::now();
        match calls.call(&target, true) {
            0 => mounts.push(micros(start)),
            errno => return failed(errno),
        }
        match calls.call(&target, false) {
            0 => pairs.push(micros(start)),
            errno => return failed(errno),
        }
        // Unmounting what is no mount fails at once (EINVAL): the cost of the call alone.
        let start = std::time::Instant::now();
        calls.call(&target, false);
        refused.push(micros(start));
    }
    let mean = pairs.iter().sum::<f64>() / pairs.len() as f64;
    let quantile = |times: &mut Vec<f64>, q: f64| {
        times.sort_by(f64::total_cmp);
        times[((times.len() - 1) as f64 * q).round() as usize]
    };
    format!(
        "{:.1} {:.1} {:.1} {:.1} {:.1}",
        quantile(&mut pairs, 0.5),
        quantile(&mut pairs, 0.99),
        mean,
        quantile(&mut mounts, 0.5),
        quantile(&mut refused, 0.5)
    )
}

/// Sends one request (with a JSON `body`, if given) on the Unix socket `socket` and answers
/// with the response's status line.
fn http(socket: &str, method: &str, target: &str, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(err) => return errno_name(&err),
    };
    let body = body.map_or_else(String::new, |body| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    });
    let body = if body.is_empty() { "\r\n".into() } else { body };
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n{body}");
    let mut response = Vec::new();
    let exchanged = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.read_to_end(&mut response));
    if let Err(err) = exchanged {
        return errno_name(&err);
    }
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or("(no response)").to_string()
}

/// Times `n` GET requests of `target` on one keep-alive connection to `socket`, each read to
/// the end of its body (Content-Length framing); "p50 p99 mean" in microseconds.
fn bench_http(socket: &str, target: &str, n: usize) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(err) => return errno_name(&err),
    };
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(err) => return errno_name(&err),
    };
    let mut reader = BufReader::new(stream);
    let request = format!("GET {target} HTTP/1.1\r\nHost: docker\r\n\r\n");
    let mut times = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let start = std::time::Instant::now();
        if let Err(err) = writer.write_all(request.as_bytes()) {
            return errno_name(&err);
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return "the connection closed".to_string(),
                Ok(_) => {}
                Err(err) => return errno_name(&err),
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if let Err(err) = reader.read_exact(&mut body) {
            return errno_name(&err);
        }
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!("{:.1} {:.1} {:.1}", at(0.5), at(0.99), mean)
}

/// Mounts and unmounts a tmpfs on `dir` for `millis` ms, whatever each call answers, and counts
/// the answers per call.
fn churn_mount(millis: u64, dir: &str) -> String {
    let mut answers = std::collections::BTreeMap::<String, u64>::new();
    let deadline = std::time::Duration::from_millis(millis);
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        let mounted = mount(Some("none"), dir, Some("tmpfs"), 0, None);
        *answers.entry(format!("mount:{mounted}")).or_default() += 1;
        // SAFETY: a valid NUL-terminated path.
        let unmounted = answer(unsafe { libc::umount2(c(dir).as_ptr(), 0) } as libc::c_long);
        *answers.entry(format!("umount:{unmounted}")).or_default() += 1;
    }
    let counts: Vec<String> = answers.iter().map(|(k, n)| format!("{k}={n}")).collect();
    counts.join(" ")
}

/// Mounts a tmpfs on `dir` and unmounts it for `millis` ms; the mounts' answers in the order
/// they came, each run of one answer as "ANSWER*COUNT".
fn mount_runs(millis: u64, dir: &str) -> String {
    let mut runs: Vec<(String, u64)> = Vec::new();
    let deadline = std::time::Duration::from_millis(millis);
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        let mounted = mount(Some("none"), dir, Some("tmpfs"), 0, None);
        match runs.last_mut() {
            Some((last, count)) if *last == mounted => *count += 1,
            _ => runs.push((mounted, 1)),
        }
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c(dir).as_ptr(), 0) };
    }
    let runs: Vec<String> = runs.iter().map(|(a, n)| format!("{a}*{n}")).collect();
    runs.join(" ")
}

/// How many times a second `file` can be opened, read whole and closed, over `millis` ms.
fn bench_read(file: &str, millis: u64) -> String {
    use std::io::Read;
    let mut buf = Vec::with_capacity(64 * 1024);
    let deadline = std::time::Duration::from_millis(millis);
    let start = std::time::Instant::now();
    let mut reads = 0u64;
    while start.elapsed() < deadline {
        buf.clear();
        let read = std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut buf));
        if let Err(err) = read {
            return format!("{file}: {err}");
        }
        reads += 1;
    }
    format!("{:.0}", reads as f64 / start.elapsed().as_secs_f64())
}

/// Mounts on `dir` `n` times with a type argument that another thread keeps rewriting between
/// "tmpfs" and "ramfs", and counts what was mounted (by the filesystem's magic number) and what
/// was refused. A vetter that decided on one reading and let the kernel read again would mount
/// ramfs under a policy that allows only tmpfs.
fn race_fstype(n: usize, dir: &str) -> String {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    const RAMFS_MAGIC: libc::c_long = 0x8584_58f6;
    static FSTYPE: [AtomicU8; 6] = [const { AtomicU8::new(0) }; 6];
    let write = |name: &[u8; 5]| {
        for (byte, value) in FSTYPE.iter().zip(name) {
            byte.store(*value, Ordering::Relaxed);
        }
    };
    write(b"tmpfs");
    let stop = AtomicBool::new(false);
    let target = c(dir);
    let (mut tmpfs, mut ramfs, mut refused) = (0, 0, 0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                write(b"ramfs");
                std::hint::spin_loop();
                write(b"tmpfs");
            }
        });
        for _ in 0..n {
            let fstype = FSTYPE.as_ptr().cast::<libc::c_char>();
            // SAFETY: every pointer is a NUL-terminated string (FSTYPE's last byte stays 0).
            let mounted = unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    target.as_ptr(),
                    fstype,
                    0,
                    std::ptr::null(),
                )
            };
            if mounted != 0 {
                refused += 1;
                continue;
            }
            // SAFETY: an all-zero statfs is valid; the path is NUL-terminated.
            let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: fs is a valid out pointer.
            unsafe { libc::statfs(target.as_ptr(), &mut fs) };
            if fs.f_type as libc::c_long == RAMFS_MAGIC {
                ramfs += 1;
            } else {
                tmpfs += 1;
            }
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), 0) };
        }
        stop.store(true, Ordering::Relaxed);
    });
    format!("tmpfs {tmpfs} ramfs {ramfs} refused {refused}")
}

/// Runs the commands in `args` (separated by `,`) and prints one answer per line.
pub fn main_with(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for command in args.split(|a| *a == ",") {
        println!("{}", run(command));
    }
}
