//! Any NAE page-state-change buffer is processed without panic, and the hypervisor never moves
//! `cur_entry` backwards or past `end_entry + 1`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snpsim_defs::ghcb::{PscBuffer, PscEntry, PscHeader};

fuzz_target!(|data: &[u8]| {
    let words: Vec<u64> =
        data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    let Some((&header, entries)) = words.split_first() else { return };
    let mut buf = PscBuffer {
        header: PscHeader::from_bits(header),
        entries: entries.iter().map(|&e| PscEntry::from_bits(e)).collect(),
    };
    let before = buf.header.cur_entry();
    let mut pages = 0u64;
    snpsim_kvm::psc::process_ghcb(&mut buf, 512, |r| {
        pages += r.pages;
        r.pages <= 512 * 253
    });
    assert!(buf.header.cur_entry() >= before);
    assert!(
        u32::from(buf.header.cur_entry()) <= u32::from(buf.header.end_entry()) + 1
            || buf.header.cur_entry() == before
    );
});
