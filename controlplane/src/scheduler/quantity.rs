//! Kubernetes resource quantities ("100m", "1.5", "128Mi", "1G", "2e3") as integers: CPU in
//! millicores, everything else in units (bytes for memory).

/// Parses a quantity into thousandths of its unit (so "100m" CPU is 100 and "1" is 1000).
pub fn milli_units(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let (multiplier_num, multiplier_den): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: u32 = exponent[1..].parse().ok()?;
            (10_i128.checked_pow(power)?, 1)
        }
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let negative = whole.starts_with('-');
    let whole: i128 = whole.trim_start_matches(['-', '+']).parse().unwrap_or(0);
    let digits = fraction.len().min(9) as u32;
    let fraction: i128 = if digits == 0 {
        0
    } else {
        fraction[..digits as usize].parse().ok()?
    };
    let scale = 10_i128.pow(digits);
    // value * 1000 * multiplier, kept exact in integers.
    let milli = (whole * scale + fraction) * 1000 * multiplier_num / multiplier_den / scale;
    Some(if negative { -milli } else { milli })
}

#[cfg(test)]
mod tests {
    use super::milli_units;

    #[test]
    fn quantities() {
        assert_eq!(milli_units("100m"), Some(100));
        assert_eq!(milli_units("1"), Some(1000));
        assert_eq!(milli_units("1.5"), Some(1500));
        assert_eq!(milli_units("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(milli_units("1G"), Some(1_000_000_000_000));
        assert_eq!(milli_units("2e3"), Some(2_000_000));
        assert_eq!(milli_units("bad"), None);
        assert_eq!(milli_units("1Xi"), None);
    }
}
