//! Job objects: the payload starts suspended, is assigned to a new job with its limits and a
//! completion port, then resumed; the job is waited on, accounted and killed as a whole.
//! cargo's `util/job.rs` is the model.

use std::ffi::c_void;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use windows::Win32::Foundation::{
    GetLastError, HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, SetHandleInformation, WAIT_OBJECT_0,
};
use windows::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE};
use windows::Win32::System::IO::{CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED};
use windows::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_CPU_RATE_CONTROL_ENABLE,
    JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP, JOB_OBJECT_CPU_RATE_CONTROL_MIN_MAX_RATE,
    JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED, JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_JOB_MEMORY,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOBOBJECT_ASSOCIATE_COMPLETION_PORT,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_CPU_RATE_CONTROL_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectAssociateCompletionPortInformation,
    JobObjectBasicAccountingInformation, JobObjectCpuRateControlInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    TerminateJobObject,
};
use windows::Win32::System::Threading::{
    ALL_PROCESSOR_GROUPS, CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, CreateProcessW,
    DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetActiveProcessorCount, GetExitCodeProcess,
    InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    PROCESS_INFORMATION, ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOEXW, TerminateProcess,
    UpdateProcThreadAttribute, WaitForSingleObject,
};
use windows::core::{PCWSTR, PWSTR};

use crate::platform::{Job, JobLimits, JobStats, Launch, LimitKind, PlatformError};

use super::handles::*;

// Job object messages (winnt.h JOB_OBJECT_MSG_*).
pub(super) const MSG_ACTIVE_PROCESS_LIMIT: u32 = 3;
pub(super) const MSG_ACTIVE_PROCESS_ZERO: u32 = 4;
pub(super) const MSG_JOB_MEMORY_LIMIT: u32 = 10;

/// The exit code of processes killed with their job.
pub(super) const KILLED_EXIT_CODE: u32 = 1;

/// The CPU rate cap of the job this process runs in (the container's), in 1/10000 of the
/// machine; `None` when it has none, or none that caps (weight-based), or cannot be read.
fn parent_cpu_rate() -> Option<u32> {
    let mut info = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION::default();
    // SAFETY: no handle: the job of this process; the structure is writable and its size passed.
    unsafe {
        QueryInformationJobObject(
            None,
            JobObjectCpuRateControlInformation,
            &mut info as *mut _ as *mut c_void,
            size_of::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>() as u32,
            None,
        )
    }
    .ok()?;
    let flags = info.ControlFlags;
    if flags & JOB_OBJECT_CPU_RATE_CONTROL_ENABLE != JOB_OBJECT_CPU_RATE_CONTROL_ENABLE
        || flags & JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED == JOB_OBJECT_CPU_RATE_CONTROL_WEIGHT_BASED
    {
        return None;
    }
    // SAFETY: the flags say which member of the union the call filled.
    let rate = unsafe {
        if flags & JOB_OBJECT_CPU_RATE_CONTROL_MIN_MAX_RATE == JOB_OBJECT_CPU_RATE_CONTROL_MIN_MAX_RATE {
            u32::from(info.Anonymous.Anonymous.MaxRate)
        } else {
            info.Anonymous.CpuRate
        }
    };
    (rate > 0).then_some(rate)
}

/// What a payload's CPU rate would be set to from inside this process's job: the parent's rate
/// (as read) and the rate set on a new job for `millis`, read back from that job. For the
/// self-test, run inside a capped job.
pub fn nested_cpu_rate(millis: u64) -> Result<(Option<u32>, u32, u64), PlatformError> {
    let parent = parent_cpu_rate();
    // SAFETY: an anonymous job with default security; owned below.
    let job = Owned(
        unsafe { CreateJobObjectW(None, PCWSTR::null()) }
            .map_err(|e| win_err("CreateJobObjectW", "probe", e))?,
    );
    set_limits(&job, &JobLimits { cpu_millis: Some(millis), ..JobLimits::default() })?;
    let mut info = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION::default();
    // SAFETY: the job handle is valid; the structure is writable and its size passed.
    unsafe {
        QueryInformationJobObject(
            Some(job.0),
            JobObjectCpuRateControlInformation,
            &mut info as *mut _ as *mut c_void,
            size_of::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>() as u32,
            None,
        )
    }
    .map_err(|e| win_err("QueryInformationJobObject(CPU rate)", "probe", e))?;
    // SAFETY: a plain query of the active processors in all groups, as set_limits makes it.
    let cpus = u64::from(unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) }.max(1));
    // SAFETY: set_limits set a plain CpuRate (no weight, no min/max).
    Ok((parent, unsafe { info.Anonymous.CpuRate }, cpus))
}

/// Sets the job's limits; returns what the user should know about them (a container cap lower
/// than the CPU asked for).
pub(super) fn set_limits(job: &Owned, limits: &JobLimits) -> Result<Option<String>, PlatformError> {
    let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    if let Some(bytes) = limits.memory_bytes {
        info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
        info.JobMemoryLimit = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    if let Some(processes) = limits.processes {
        info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
        info.BasicLimitInformation.ActiveProcessLimit = processes;
    }
    // SAFETY: the structure is valid for the call and its size is passed.
    unsafe {
        SetInformationJobObject(
            job.0,
            JobObjectExtendedLimitInformation,
            &info as *const _ as *const c_void,
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    }
    .map_err(|e| win_err("SetInformationJobObject(limits)", "job", e))?;

    let mut note = None;
    if let Some(millis) = limits.cpu_millis {
        // SAFETY: a plain query of the active processors in all groups.
        let cpus = u64::from(unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) }.max(1));
        // CpuRate is the share of all processors' cycles, in 1/10000, of the parent job's share.
        let nested = crate::cpu::nested_rate(millis, cpus, parent_cpu_rate());
        let rate = nested.rate;
        note = nested.note;
        let mut cpu = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
            ControlFlags: JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
            ..Default::default()
        };
        cpu.Anonymous.CpuRate = rate;
        // SAFETY: the structure is valid for the call and its size is passed.
        unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectCpuRateControlInformation,
                &cpu as *const _ as *const c_void,
                size_of::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>() as u32,
            )
        }
        .map_err(|e| {
            let err = win_err("SetInformationJobObject(CPU rate)", "job", e);
            let code = err.code.unwrap_or_default();
            PlatformError::new(
                "SetInformationJobObject(CPU rate)",
                format!("{millis}m"),
                format!("the OS refused the CPU rate limit (error {code}: {}); the payload was not started — remove limits.cpu or run on a Windows version with job CPU rate control", err.detail),
            )
            .with_code(code)
        })?;
    }
    Ok(note)
}

/// A process/thread attribute list, deleted on drop.
struct AttributeList {
    buffer: Vec<u8>,
}

impl AttributeList {
    /// A list that lets the new process inherit `handles` and nothing else.
    fn inherit_only(handles: &[HANDLE]) -> Result<Self, PlatformError> {
        let mut size = 0usize;
        // SAFETY: a size query with no list; it fails with ERROR_INSUFFICIENT_BUFFER by design.
        let _ = unsafe { InitializeProcThreadAttributeList(None, 1, None, &mut size) };
        let mut list = AttributeList { buffer: vec![0u8; size.max(64)] };
        // SAFETY: the buffer has the size the query asked for.
        unsafe { InitializeProcThreadAttributeList(Some(list.ptr()), 1, None, &mut size) }
            .map_err(|e| win_err("InitializeProcThreadAttributeList", "handle list", e))?;
        // SAFETY: the handles outlive the list (the caller keeps them until CreateProcessW returns).
        unsafe {
            UpdateProcThreadAttribute(
                list.ptr(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                Some(handles.as_ptr() as *const c_void),
                std::mem::size_of_val(handles),
                None,
                None,
            )
        }
        .map_err(|e| win_err("UpdateProcThreadAttribute(HANDLE_LIST)", "handle list", e))?;
        Ok(list)
    }

    fn ptr(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        LPPROC_THREAD_ATTRIBUTE_LIST(self.buffer.as_mut_ptr() as *mut c_void)
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: the list was initialized in `inherit_only` and is deleted once.
        unsafe { DeleteProcThreadAttributeList(self.ptr()) };
    }
}

/// Starts `application` (an absolute path) with the command line, suspended, with the executor's
/// standard handles — and only those: whatever else this process holds inheritable (handles
/// its own parent passed down) stays out of the payload.
pub(super) fn spawn_suspended(application: &str, line: &str) -> Result<(Owned, Owned, u32), PlatformError> {
    let mut startup = STARTUPINFOEXW::default();
    startup.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    // SAFETY: plain queries of this process's standard handles (not owned: no close).
    unsafe {
        startup.StartupInfo.hStdInput = GetStdHandle(STD_INPUT_HANDLE).unwrap_or_default();
        startup.StartupInfo.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE).unwrap_or_default();
        startup.StartupInfo.hStdError = GetStdHandle(STD_ERROR_HANDLE).unwrap_or_default();
    }
    let mut inherited: Vec<HANDLE> = Vec::new();
    for handle in
        [startup.StartupInfo.hStdInput, startup.StartupInfo.hStdOutput, startup.StartupInfo.hStdError]
    {
        if handle.is_invalid() || handle.0.is_null() || inherited.contains(&handle) {
            continue;
        }
        // A handle in the list must be inheritable; a console handle may refuse the flag, and
        // then it is not passed (the payload gets its own).
        // SAFETY: a valid handle of this process; only its inherit flag changes.
        if unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT.0, HANDLE_FLAG_INHERIT) }.is_ok() {
            inherited.push(handle);
        }
    }
    let mut attributes =
        if inherited.is_empty() { None } else { Some(AttributeList::inherit_only(&inherited)?) };
    if let Some(list) = attributes.as_mut() {
        startup.lpAttributeList = list.ptr();
    }
    let mut cmdline: Vec<u16> = wide(line);
    let application = wide(application);
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: the command line buffer is writable and NUL-terminated as CreateProcessW needs;
    // the extended startup information and its attribute list live until the call returns; the
    // returned handles are owned below.
    unsafe {
        CreateProcessW(
            PCWSTR(application.as_ptr()),
            Some(PWSTR(cmdline.as_mut_ptr())),
            None,
            None,
            !inherited.is_empty(),
            CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP | EXTENDED_STARTUPINFO_PRESENT,
            None,
            PCWSTR::null(),
            &startup.StartupInfo,
            &mut info,
        )
    }
    .map_err(|e| win_err("CreateProcessW", line, e))?;
    drop(attributes);
    Ok((Owned(info.hProcess), Owned(info.hThread), info.dwProcessId))
}

/// The payload's job object; closing it (on drop) kills whatever is left in it.
#[derive(Debug)]
pub struct NativeJob {
    job: Owned,
    port: Owned,
    process: Owned,
    pid: u32,
    stats: JobStats,
    exit: Option<i64>,
    /// Being stopped for going over a limit.
    stopping: bool,
    /// What the user should know about the limits as set.
    note: Option<String>,
}

impl NativeJob {
    /// Reads the job's messages queued so far, waiting at most `wait`.
    fn drain_messages(&mut self, wait: Duration) {
        let mut timeout = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        loop {
            let (mut message, mut key, mut overlapped) = (0u32, 0usize, std::ptr::null_mut::<OVERLAPPED>());
            // SAFETY: out-pointers are valid; job messages carry no buffer to free.
            let got = unsafe {
                GetQueuedCompletionStatus(self.port.0, &mut message, &mut key, &mut overlapped, timeout)
            };
            if got.is_err() {
                return;
            }
            // The payload may make jobs of its own; only messages about ours count.
            if key != self.job.0.0 as usize {
                timeout = 0;
                continue;
            }
            match message {
                MSG_JOB_MEMORY_LIMIT => self.stats.limit_exceeded = Some(LimitKind::Memory),
                MSG_ACTIVE_PROCESS_LIMIT => self.stats.limit_exceeded = Some(LimitKind::Processes),
                MSG_ACTIVE_PROCESS_ZERO => {}
                _ => {}
            }
            timeout = 0;
        }
    }

    fn active_processes(&self) -> u32 {
        let mut info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
        // SAFETY: the structure is writable and its size is passed.
        let ok = unsafe {
            QueryInformationJobObject(
                Some(self.job.0),
                JobObjectBasicAccountingInformation,
                &mut info as *mut _ as *mut c_void,
                size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                None,
            )
        };
        if ok.is_ok() { info.ActiveProcesses } else { 0 }
    }
}

impl Job for NativeJob {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn poll(&mut self, slice: Duration) -> Result<Option<i64>, PlatformError> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        let ms = u32::try_from(slice.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: the process handle is valid.
        let waited = unsafe { WaitForSingleObject(self.process.0, ms) };
        self.drain_messages(Duration::ZERO);
        if waited != WAIT_OBJECT_0 {
            if self.stats.limit_exceeded.is_none() || self.stopping {
                return Ok(None);
            }
            // Windows refuses the allocation or the process creation and lets the job run on;
            // a payload that went over its limit is stopped, as on the Linux platform.
            self.stopping = true;
            self.kill()?;
            return Ok(self.exit);
        }
        let mut code = 0u32;
        // SAFETY: the handle is valid and `code` is writable.
        unsafe { GetExitCodeProcess(self.process.0, &mut code) }
            .map_err(|e| win_err("GetExitCodeProcess", &self.pid.to_string(), e))?;
        self.exit = Some(hostprocess_protocol::exit_code_from_windows(code));
        Ok(self.exit)
    }

    fn kill(&mut self) -> Result<(), PlatformError> {
        // SAFETY: the job handle is valid; every process in the job is terminated.
        unsafe { TerminateJobObject(self.job.0, KILLED_EXIT_CODE) }
            .map_err(|e| win_err("TerminateJobObject", &self.pid.to_string(), e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.active_processes() > 0 {
            if Instant::now() > deadline {
                return Err(PlatformError::new(
                    "TerminateJobObject",
                    self.pid.to_string(),
                    "processes of the job are still alive after 10s",
                ));
            }
            self.drain_messages(Duration::from_millis(10));
        }
        self.poll(Duration::from_secs(5))?;
        Ok(())
    }

    fn note(&self) -> Option<String> {
        self.note.clone()
    }

    fn stats(&mut self) -> JobStats {
        self.drain_messages(Duration::ZERO);
        let mut basic = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
        // SAFETY: the structure is writable and its size is passed.
        let ok = unsafe {
            QueryInformationJobObject(
                Some(self.job.0),
                JobObjectBasicAccountingInformation,
                &mut basic as *mut _ as *mut c_void,
                size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                None,
            )
        };
        if ok.is_ok() {
            // 100-nanosecond units.
            self.stats.cpu_time_ms = ((basic.TotalUserTime + basic.TotalKernelTime) / 10_000) as u64;
            self.stats.active_processes = basic.ActiveProcesses;
        }
        let mut extended = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        // SAFETY: the structure is writable and its size is passed.
        let ok = unsafe {
            QueryInformationJobObject(
                Some(self.job.0),
                JobObjectExtendedLimitInformation,
                &mut extended as *mut _ as *mut c_void,
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                None,
            )
        };
        if ok.is_ok() {
            self.stats.peak_memory_bytes = extended.PeakJobMemoryUsed as u64;
        }
        self.stats
    }
}

pub(super) fn launch(launch: &Launch, limits: &JobLimits) -> Result<NativeJob, PlatformError> {
    let program = launch.program.to_str().ok_or_else(|| {
        PlatformError::new(
            "launch",
            launch.program.to_string_lossy(),
            "the program path is not valid Unicode",
        )
    })?;
    let args: Vec<&str> = launch
        .args
        .iter()
        .map(|a| {
            a.to_str().ok_or_else(|| {
                PlatformError::new("launch", a.to_string_lossy(), "an argument is not valid Unicode")
            })
        })
        .collect::<Result<_, _>>()?;
    let program =
        crate::cmdline::resolve_program(program, &search_path(), |p| std::path::Path::new(p).is_file())
            .map_err(|e| PlatformError::new("launch", program, e))?;
    let program = program.as_str();
    let line =
        crate::cmdline::command_line(program, &args).map_err(|e| PlatformError::new("launch", program, e))?;

    // SAFETY: an anonymous job with default security; owned below.
    let job = Owned(
        unsafe { CreateJobObjectW(None, PCWSTR::null()) }
            .map_err(|e| win_err("CreateJobObjectW", program, e))?,
    );
    let note = set_limits(&job, limits)?;
    // SAFETY: a new completion port not bound to a file; owned below.
    let port = Owned(
        unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, None, 0, 1) }
            .map_err(|e| win_err("CreateIoCompletionPort", program, e))?,
    );
    let associate = JOBOBJECT_ASSOCIATE_COMPLETION_PORT { CompletionKey: job.0.0, CompletionPort: port.0 };
    // SAFETY: the structure is valid for the call and its size is passed.
    unsafe {
        SetInformationJobObject(
            job.0,
            JobObjectAssociateCompletionPortInformation,
            &associate as *const _ as *const c_void,
            size_of::<JOBOBJECT_ASSOCIATE_COMPLETION_PORT>() as u32,
        )
    }
    .map_err(|e| win_err("SetInformationJobObject(completion port)", program, e))?;

    let (process, thread, pid) = spawn_suspended(program, &line)?;
    // SAFETY: both handles are valid; a process may be assigned to the job only before it runs.
    if let Err(e) = unsafe { AssignProcessToJobObject(job.0, process.0) } {
        // SAFETY: the suspended process is ours to end.
        let _ = unsafe { TerminateProcess(process.0, KILLED_EXIT_CODE) };
        return Err(win_err("AssignProcessToJobObject", program, e));
    }
    // SAFETY: the thread handle is valid; resuming the suspended main thread starts the payload.
    if unsafe { ResumeThread(thread.0) } == u32::MAX {
        // SAFETY: reading the thread's last error right after the failed call.
        let code = unsafe { GetLastError() };
        // SAFETY: the job handle is valid; it holds only the payload that never ran.
        let _ = unsafe { TerminateJobObject(job.0, KILLED_EXIT_CODE) };
        return Err(net_err("ResumeThread", program, code.0));
    }
    Ok(NativeJob { job, port, process, pid, stats: JobStats::default(), exit: None, stopping: false, note })
}

/// Where a bare program name is looked for: System32, the Windows folder, then PATH.
fn search_path() -> Vec<String> {
    let system_root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
    let path = std::env::var("PATH").unwrap_or_default();
    [format!(r"{system_root}\System32"), system_root]
        .into_iter()
        .chain(path.split(';').filter(|d| !d.is_empty()).map(String::from))
        .collect()
}

pub(super) fn script_command(script: PathBuf) -> Launch {
    let system_root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
    Launch {
        program: format!(r"{system_root}\System32\WindowsPowerShell\v1.0\powershell.exe").into(),
        args: ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
            .into_iter()
            .map(Into::into)
            .chain(std::iter::once(script.into_os_string()))
            .collect(),
    }
}
