//! Every map and global of the kernel programs, in one place.
use agent_common::{Config, SockInfo};
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Patched at load time by the agent (`EbpfLoader::override_global`); read with
/// `read_volatile`, or the compiler folds the zero initializer in.
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config {
    mode: 0,
    self_pid: 0,
    copy_len: 0,
    wakeup_bytes: 0,
    offsets_ok: 0,
    capture_client: 0,
    capture_server: 0,
    port_select: 0,
    exec_notify: 0,
    offsets: agent_common::Offsets {
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_inode: 0,
        file_private_data: 0,
        inode_mode: 0,
        socket_sk: 0,
        skc_daddr: 0,
        skc_rcv_saddr: 0,
        skc_dport: 0,
        skc_num: 0,
        skc_family: 0,
        skc_v6_daddr: 0,
        skc_v6_rcv_saddr: 0,
        socket_type: 0,
        task_mm: 0,
        mm_env_start: 0,
        mm_env_end: 0,
        mm_exe_file: 0,
        file_f_path: 0,
        path_dentry: 0,
        dentry_d_name: 0,
        qstr_name: 0,
    },
};

/// Records to userspace. Sized by the agent at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Processes selected for tracing when `CONFIG.mode == mode::SELECTED`: one bit per tgid
/// (tgid >> 6 is the word, tgid & 63 the bit), for every pid Linux can hand out
/// (PID_MAX_LIMIT = 4,194,304 on 64-bit): 512 KiB. An array lookup is inlined by the verifier,
/// unlike a hash lookup, and this test runs on every syscall exit of every process. The agent
/// maps it (BPF_F_MMAPABLE) and flips bits with atomic operations, as the kernel side does.
#[map]
pub static SELECTED: Array<u64> =
    Array::with_max_entries(agent_common::SELECTED_WORDS, BPF_F_MMAPABLE);

/// Local ports whose accepting processes get selected (`CONFIG.port_select`).
#[map]
pub static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);

/// Socket fds seen recently, by `tgid << 32 | fd` (see `probes::socket_of_fd`).
#[map]
pub static SOCKS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(65536, 0);

/// Sockets Sonde follows, by `struct sock *`, to their `SOCKS` key (`tgid << 32 | fd`): the
/// sock tracepoint reports only their close, and marks their `SOCKS` entry as closing.
#[map]
pub static LIVE_SOCKS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// Records lost to a full ring, host-wide (one slot, updated atomically): every record
/// carries its value (`EventHeader::ring_lost`).
#[map]
pub static RING_LOST: Array<u32> = Array::with_max_entries(1, 0);

/// Processes whose naming facts were sent (`kind::PROC_EXE`, `kind::PROC_ENV`) since they
/// started or last ran a new program, by tgid.
#[map]
pub static NAMED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Kernel-side counters, indexed by `agent_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(agent_common::counter::COUNT, 0);
