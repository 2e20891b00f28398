//! Device rules on cgroup v2, where there is no `devices` controller: the kernel asks a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup instead. libcgroups builds one
//! only with its `cgroupsv2_devices` feature, which links libbpf (C, with libelf); without it,
//! its v2 manager skips device rules without a word, and a container could open any device
//! node its rootfs holds (an image may carry `/dev/sda`). The program here is a straight list
//! of comparisons, built from the OCI rules and loaded with bpf(2).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// One BPF instruction, as the kernel reads it (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61;
const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const AND64_IMM: u8 = 0x57;
const RSH64_IMM: u8 = 0x77;
const JNE_IMM: u8 = 0x55;
const JEQ_IMM: u8 = 0x15;
const EXIT: u8 = 0x95;

// `struct bpf_cgroup_dev_ctx`: access_type (type | access << 16), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Registers: r1 the context; r2 the type, r3 the access, r4 major, r5 minor, r6 scratch.
const PROLOGUE: [Insn; 6] = [
    insn(LDX_MEM_W, 2, 1, 0, 0),
    insn(MOV64_REG, 3, 2, 0, 0),
    insn(AND64_IMM, 2, 0, 0, 0xffff),
    insn(RSH64_IMM, 3, 0, 0, 16),
    insn(LDX_MEM_W, 4, 1, 4, 0),
    insn(LDX_MEM_W, 5, 1, 8, 0),
];

/// Why a rule cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RuleError {
    /// An access string with letters other than r, w and m.
    #[error("device rule access '{0}' is not made of r, w and m")]
    Access(String),
    /// A major or minor number out of range.
    #[error("device number {0} is out of range")]
    Number(i64),
}

fn access_mask(access: Option<&str>) -> Result<i32, RuleError> {
    let access = access.unwrap_or("rwm");
    access.chars().try_fold(0, |mask, c| match c {
        'r' => Ok(mask | ACC_READ),
        'w' => Ok(mask | ACC_WRITE),
        'm' => Ok(mask | ACC_MKNOD),
        _ => Err(RuleError::Access(access.to_string())),
    })
}

/// A wildcard (`None`, or -1 as some engines write it) or a number the kernel can compare.
fn number(n: Option<i64>) -> Result<Option<i32>, RuleError> {
    match n {
        None | Some(-1) => Ok(None),
        // Below 2^31: the comparison's immediate is sign-extended (the kernel's device numbers
        // stay far below, majors under 4096, minors under 2^20).
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as i32)),
        Some(n) => Err(RuleError::Number(n)),
    }
}

/// The program for `rules` in OCI order, where a later rule overrides an earlier one for the
/// devices both match, and what no rule matches is denied. Rules are tried last to first, and
/// the first that matches decides: an allow rule matches a request whose every access it
/// grants, a deny rule one that asks for any access it denies. That errs towards denying: an
/// access split over two allow rules (`r` in one, `w` in the other) is refused when asked for
/// at once.
pub(crate) fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, RuleError> {
    let mut out = PROLOGUE.to_vec();
    for rule in rules.iter().rev() {
        let typ = match rule.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
            Some(LinuxDeviceType::C | LinuxDeviceType::U) => Some(DEV_CHAR),
            // A pipe (p) is no device node the kernel asks about: the rule matches nothing.
            Some(LinuxDeviceType::P) => continue,
        };
        let mask = access_mask(rule.access().as_deref())?;
        let checks = [
            typ.map(|t| (2, t)),
            number(rule.major())?.map(|m| (4, m)),
            number(rule.minor())?.map(|m| (5, m)),
        ];
        let checks: Vec<(u8, i32)> = checks.into_iter().flatten().collect();
        // Each check jumps past the rest of the block when it fails: the other checks, the
        // access test (three instructions), the verdict and the exit.
        let block = checks.len() + 5;
        for (i, (reg, value)) in checks.iter().enumerate() {
            let skip = (block - i - 1) as i16;
            out.push(insn(JNE_IMM, *reg, 0, skip, *value));
        }
        out.push(insn(MOV64_REG, 6, 3, 0, 0));
        if rule.allow() {
            // Every access asked for must be in the rule's mask.
            out.push(insn(AND64_IMM, 6, 0, 0, !mask));
            out.push(insn(JNE_IMM, 6, 0, 2, 0));
        } else {
            // Any access asked for that the rule denies.
            out.push(insn(AND64_IMM, 6, 0, 0, mask));
            out.push(insn(JEQ_IMM, 6, 0, 2, 0));
        }
        out.push(insn(MOV64_IMM, 0, 0, 0, i32::from(rule.allow())));
        out.push(insn(EXIT, 0, 0, 0, 0));
    }
    out.push(insn(MOV64_IMM, 0, 0, 0, 0));
    out.push(insn(EXIT, 0, 0, 0, 0));
    Ok(out)
}

/// Loads `insns` as a device program and attaches it to the cgroup v2 directory `cgroup`,
/// beside any others (`BPF_F_ALLOW_MULTI`: every attached program must allow). The kernel
/// keeps it attached until the cgroup is removed.
pub(crate) fn attach(insns: &[Insn], cgroup: &std::path::Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(cgroup)?;
    let prog = load(insns)?;
    #[repr(C)]
    struct AttachAttr {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let attr = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: the attach arguments hold descriptors only, both open through the call.
    unsafe { bpf(BPF_PROG_ATTACH, &attr) }.map(drop)
}

fn load(insns: &[Insn]) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    struct LoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"eci_devices");
    let attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: `insns` and the license, which attr points to, outlive the call.
    let fd = unsafe { bpf(BPF_PROG_LOAD, &attr) }?;
    // SAFETY: the kernel just returned this descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// bpf(2): `cmd` with `attr`, a prefix of `union bpf_attr`.
///
/// # Safety
/// Every pointer in `attr` must point to memory valid for what `cmd` reads or writes there,
/// for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr points to size_of::<T>() readable bytes, which the kernel reads (with what
    // they point to, valid as the caller promised) only during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the program answers for (type, access, major, minor), run by a small interpreter
    /// of the instructions it uses.
    fn run(insns: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> i64 {
        let mut r = [0i64; 11];
        let ctx = [(typ | access << 16) as u32, major, minor];
        let mut pc = 0usize;
        loop {
            let i = insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[i.off as usize / 4]),
                MOV64_REG => r[dst] = r[src],
                MOV64_IMM => r[dst] = i64::from(i.imm),
                AND64_IMM => r[dst] &= i64::from(i.imm),
                RSH64_IMM => r[dst] >>= i.imm,
                JNE_IMM => {
                    if r[dst] != i64::from(i.imm) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                JEQ_IMM => {
                    if r[dst] == i64::from(i.imm) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_safe_set_allows_its_devices_only() {
        let rules = eci_policy::harden::safe_device_cgroup();
        let prog = program(&rules).unwrap();
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&prog, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&prog, DEV_CHAR, ACC_MKNOD, 1, 3), 1);
        assert_eq!(run(&prog, DEV_BLOCK, rw, 8, 0), 0, "/dev/sda");
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 1, 3), 0, "a block 1:3");
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem");
    }

    #[test]
    fn later_rules_override_and_access_must_be_covered() {
        let rule = |allow, typ, major, minor, access: &str| {
            let mut r = LinuxDeviceCgroup::default();
            r.set_allow(allow);
            r.set_typ(typ);
            r.set_major(major);
            r.set_minor(minor);
            r.set_access(Some(access.to_string()));
            r
        };
        let rules = [
            rule(true, Some(LinuxDeviceType::C), Some(5), None, "rwm"),
            rule(false, Some(LinuxDeviceType::C), Some(5), Some(1), "w"),
            rule(true, Some(LinuxDeviceType::B), Some(7), Some(-1), "r"),
        ];
        let prog = program(&rules).unwrap();
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 5, 1), 1);
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 5, 1), 0, "the later deny");
        assert_eq!(
            run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 5, 1),
            0,
            "asks for what it denies"
        );
        assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 5, 2), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 7, 9), 1);
        assert_eq!(run(&prog, DEV_BLOCK, ACC_READ | ACC_WRITE, 7, 9), 0);
        assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 6, 0), 0, "no rule: denied");
        assert_eq!(
            program(&[rule(true, None, None, None, "rx")]),
            Err(RuleError::Access("rx".into()))
        );
        assert_eq!(
            program(&[rule(false, None, Some(1 << 31), None, "rwm")]),
            Err(RuleError::Number(1 << 31))
        );
    }

    #[test]
    fn the_kernel_enforces_it_on_a_v2_cgroup() {
        // This host's cgroup2 line (hybrid) or its only hierarchy.
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
            .expect("a cgroup2 mount");
        let cgroup = root.join(format!("eci-device-filter-{}", std::process::id()));
        std::fs::create_dir(&cgroup).unwrap();
        let prog = program(&eci_policy::harden::safe_device_cgroup()).unwrap();
        attach(&prog, &cgroup).unwrap();
        let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
        // SAFETY: the child makes only async-signal-safe calls, then exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: plain syscalls on NUL-terminated paths and a valid buffer.
            let code = unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    100
                } else {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    let zero = libc::open(c"/dev/loop-control".as_ptr(), libc::O_RDWR);
                    let errno = *libc::__errno_location();
                    if null < 0 {
                        101
                    } else if zero >= 0 {
                        102
                    } else {
                        errno
                    }
                }
            };
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        let _ = std::fs::remove_dir(&cgroup);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            libc::EPERM,
            "/dev/null opens, /dev/loop-control (c 10:237) is refused"
        );
    }
}
