//! drover's own infra ("pause") image, carried in the binary so a pod needs no registry: a
//! root filesystem holding one 129-byte static x86-64 program that sleeps in pause(2) forever.
//! It only holds the pod's network namespace and published ports.

/// The image name drover imports it as (configurable per cluster later; this is the default).
pub const IMAGE: &str = "drover/pause:1";

/// `_start: mov eax, 34 (pause); syscall; jmp _start` as a minimal ELF64 executable.
fn pause_elf() -> Vec<u8> {
    let code: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let base: u64 = 0x40_0000;
    let header_len: u64 = 64 + 56;
    let total = header_len + code.len() as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(base + header_len).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for v in [0, base, base, total, total, 0x1000] {
        e.extend_from_slice(&v.to_le_bytes());
    }
    e.extend_from_slice(&code);
    e
}

/// A one-file tar (`/pause`, mode 0755) for the Docker image import API.
pub fn rootfs_tar() -> Vec<u8> {
    let body = pause_elf();
    let mut header = [0u8; 512];
    let field =
        |h: &mut [u8; 512], at: usize, text: &[u8]| h[at..at + text.len()].copy_from_slice(text);
    field(&mut header, 0, b"pause");
    field(&mut header, 100, b"0000755\0");
    field(&mut header, 108, b"0000000\0");
    field(&mut header, 116, b"0000000\0");
    field(
        &mut header,
        124,
        format!("{:011o}\0", body.len()).as_bytes(),
    );
    field(&mut header, 136, b"00000000000\0");
    field(&mut header, 156, b"0");
    field(&mut header, 257, b"ustar\x0000");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    field(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(&body);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tar_holds_one_executable_elf() {
        let tar = super::rootfs_tar();
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[0..5], b"pause");
        assert_eq!(&tar[512..516], b"\x7fELF");
        assert_eq!(&tar[257..262], b"ustar");
    }
}
