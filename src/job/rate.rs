//! Byte rates as a job file writes them: `"32MiB/s"`, `"512 kB/s"`, `"1.5GB/s"`.
//!
//! Owns the accepted forms and the explanation of a rejected one. Units are read the way
//! PostgreSQL reads its memory settings (`postgresql.conf`, `pg_size_pretty`): `kB`, `MB`,
//! `GB`, `TB`, each 1024 times the one before, because that is what the people who write
//! these files read every day; `KiB`, `MiB`, `GiB`, `TiB` say the same without doubt. It does
//! not locate errors in the file (the caller does) and knows nothing of WAL.

/// The units a rate may use, with their size in bytes. PostgreSQL's own spellings first.
const UNITS: [(&str, u64); 10] = [
    ("B", 1),
    ("kB", 1 << 10),
    ("MB", 1 << 20),
    ("GB", 1 << 30),
    ("TB", 1 << 40),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1 << 10),
];

/// The forms an error message offers.
pub const RATE_FORMS: &str = "write bytes per second with a unit, e.g. \"32MiB/s\", \"512kB/s\" \
     or \"1.5GB/s\" (B, kB, MB, GB, TB as PostgreSQL reads them, each 1024 times the one \
     before; KiB, MiB, GiB, TiB are the same)";

/// Reads `text` as a rate in bytes per second: a number (decimals allowed), a unit, `/s`;
/// spaces around the parts are ignored. The error says what is wrong, without the forms.
pub fn parse_byte_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let Some(amount) = trimmed.strip_suffix("/s") else {
        return Err("it does not end in /s".into());
    };
    let amount = amount.trim_end();
    let split = amount
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(amount.len());
    let (number, unit) = (&amount[..split], amount[split..].trim_start());
    if number.is_empty() {
        return Err("it does not start with a number".into());
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a number"))?;
    let Some((_, size)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(if unit.is_empty() {
            "it has no unit".into()
        } else {
            format!("`{unit}` is not a unit of bytes")
        });
    };
    let bytes = value * *size as f64;
    if bytes < 1.0 {
        return Err("it is less than one byte per second".into());
    }
    if bytes >= u64::MAX as f64 {
        return Err("it is too large".into());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let mib = 1024 * 1024;
        for (text, bytes) in [
            ("32MiB/s", 32 * mib),
            ("32MB/s", 32 * mib),
            (" 32 MiB/s ", 32 * mib),
            ("32 MiB /s", 32 * mib),
            ("512kB/s", 512 * 1024),
            ("512KB/s", 512 * 1024),
            ("1.5GB/s", 1536 * mib),
            ("100B/s", 100),
            ("2TiB/s", 2 << 40),
        ] {
            assert_eq!(parse_byte_rate(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejected_forms_say_why() {
        for (text, why) in [
            ("32MiB", "it does not end in /s"),
            ("32 MiB per second", "it does not end in /s"),
            ("MiB/s", "it does not start with a number"),
            ("-1MiB/s", "it does not start with a number"),
            ("32/s", "it has no unit"),
            ("32mb/s", "`mb` is not a unit of bytes"),
            ("32Mbit/s", "`Mbit` is not a unit of bytes"),
            ("1.2.3MB/s", "`1.2.3` is not a number"),
            ("0MiB/s", "it is less than one byte per second"),
            ("0.5B/s", "it is less than one byte per second"),
            ("99999999999TB/s", "it is too large"),
        ] {
            assert_eq!(parse_byte_rate(text), Err(why.to_owned()), "{text}");
        }
    }
}
