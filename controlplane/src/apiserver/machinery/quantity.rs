//! Resource quantities (`100m`, `64Mi`, `1e3`) parsed as upstream's `resource.ParseQuantity`.

use crate::apiserver::machinery::prelude::*;

pub(crate) fn parse_quantity(s: &str) -> Result<f64, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QUANTITY_FORMAT_ERR);
    }
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    let mut dots = 0;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_digit() {
            digits += 1;
        } else if c == b'.' {
            dots += 1;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 || dots > 1 {
        return Err(QUANTITY_FORMAT_ERR);
    }
    let literal = s.get(..i).unwrap_or("");
    let number: f64 = literal
        .strip_prefix('+')
        .unwrap_or(literal)
        .parse()
        .map_err(|_| QUANTITY_FORMAT_ERR)?;
    let suffix = s.get(i..).unwrap_or("");
    // Go's parseQuantityString: suffix letters from "eEinumkKMGTP", then an optional sign and
    // digits; anything else is a format error, an unknown combination a suffix error.
    let letters = suffix
        .bytes()
        .take_while(|c| b"eEinumkKMGTP".contains(c))
        .count();
    let tail = suffix.get(letters..).unwrap_or("");
    let tail_digits = tail.strip_prefix(['+', '-']).unwrap_or(tail);
    if !tail_digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(QUANTITY_FORMAT_ERR);
    }
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .filter(|x| !x.is_empty())
                .ok_or(QUANTITY_SUFFIX_ERR)?;
            let e: i32 = exp.parse().map_err(|_| QUANTITY_SUFFIX_ERR)?;
            10f64.powi(e)
        }
    };
    Ok(number * factor)
}
