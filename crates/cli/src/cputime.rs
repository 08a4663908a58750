//! The CPU time of this process, for benchmarks: on a shared machine it varies less than wall
//! time, since waiting for a core is not counted.

/// User plus system CPU time of this process so far, in seconds (`/proc/self/stat` fields 14 and
/// 15, in the kernel's USER_HZ ticks, 100 per second on x86 Linux); NaN if unreadable. On a shared
/// machine it varies less than wall time: waiting for a core is not counted.
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // The command name (field 2) is parenthesised and may contain spaces: count after its `)`.
    let Some((_, rest)) = stat.rsplit_once(')') else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so fields 14 and 15 are at indices 11 and 12.
    match (
        fields.get(11).and_then(|v| v.parse::<u64>().ok()),
        fields.get(12).and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(user), Some(system)) => (user + system) as f64 / 100.0,
        _ => f64::NAN,
    }
}
