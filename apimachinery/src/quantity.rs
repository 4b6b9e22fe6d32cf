//! Resource quantities (`100m`, `64Mi`, `1.5Gi`, `2e3`) as upstream's `resource.ParseQuantity`
//! reads them, kept exact: the API server's validation, the scheduler's fit and the agent's
//! downward API all compare and scale the same number, never a float.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::names::{QUANTITY_FORMAT_ERR, QUANTITY_SUFFIX_ERR};

/// Why a text is not a quantity; the messages are upstream's `resource.Err*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// `ErrFormatWrong`: not a number followed by a suffix.
    #[error("{}", QUANTITY_FORMAT_ERR)]
    Format,
    /// `ErrSuffix`: a suffix that is not one of upstream's.
    #[error("{}", QUANTITY_SUFFIX_ERR)]
    Suffix,
    /// More significant digits than 128 bits hold (upstream keeps them; Flotilla refuses).
    #[error("unable to parse numeric part of quantity: more than 38 significant digits")]
    TooPrecise,
}

/// An exact quantity: `mantissa × 10^exponent`, rounded away from zero to nano precision as
/// `ParseQuantity` does, so `exponent` is never below -9.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

/// The finest precision upstream keeps: nano (10^-9).
const NANO: i32 = -9;

impl Quantity {
    /// Zero.
    pub const ZERO: Self = Self {
        mantissa: 0,
        exponent: 0,
    };

    /// One unit.
    pub const ONE: Self = Self {
        mantissa: 1,
        exponent: 0,
    };

    /// Parses a quantity; surrounding white space is ignored as in `Quantity.UnmarshalJSON`.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(QuantityError::Format);
        }
        // Go's parseQuantityString: suffix letters from "eEinumkKMGTP", then an optional sign
        // and digits; anything else is a format error, an unknown combination a suffix error.
        let letters = suffix
            .bytes()
            .take_while(|c| b"eEinumkKMGTP".contains(c))
            .count();
        let tail = &suffix[letters..];
        let tail_digits = tail.strip_prefix(['+', '-']).unwrap_or(tail);
        if !tail_digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(QuantityError::Format);
        }
        let (binary_power, decimal_power) = suffix_factor(suffix)?;

        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 38 {
            return Err(QuantityError::TooPrecise);
        }
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::Format)?
        };
        // A binary suffix multiplies by 2^(10k); the decimal point stays where it was, because
        // m × 2^n / 10^d is exactly (m × 2^n) × 10^-d.
        mantissa = mantissa
            .checked_mul(1_i128 << binary_power)
            .ok_or(QuantityError::TooPrecise)?;
        let fraction_digits = i32::try_from(fraction.len()).map_err(|_| QuantityError::Format)?;
        let exponent = decimal_power
            .checked_sub(fraction_digits)
            .ok_or(QuantityError::Format)?;
        let mut quantity = Self { mantissa, exponent }.rounded_to_nano();
        if negative {
            quantity.mantissa = -quantity.mantissa;
        }
        Ok(quantity.normalized())
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    /// Whether the quantity is zero.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The value in units of 10^`scale`, rounded away from zero (upstream's `ScaledValue`),
    /// saturating at the ends of i128.
    pub fn scaled_value(self, scale: i32) -> i128 {
        let shift = i64::from(self.exponent) - i64::from(scale);
        if self.mantissa == 0 {
            return 0;
        }
        if shift >= 0 {
            let factor = u32::try_from(shift)
                .ok()
                .and_then(|s| 10_i128.checked_pow(s));
            return factor.and_then(|f| self.mantissa.checked_mul(f)).unwrap_or(
                if self.mantissa < 0 {
                    i128::MIN
                } else {
                    i128::MAX
                },
            );
        }
        let Some(divisor) = u32::try_from(-shift)
            .ok()
            .and_then(|s| 10_i128.checked_pow(s))
        else {
            // Smaller than one unit of the scale: away from zero is one unit.
            return self.mantissa.signum();
        };
        let quotient = self.mantissa / divisor;
        if self.mantissa % divisor == 0 {
            quotient
        } else {
            quotient + self.mantissa.signum()
        }
    }

    /// The value rounded away from zero to an integer (`Quantity.Value()`), saturating.
    pub fn value(self) -> i64 {
        saturate(self.scaled_value(0))
    }

    /// The value in thousandths, rounded away from zero (`Quantity.MilliValue()`), saturating.
    pub fn milli_value(self) -> i64 {
        saturate(self.scaled_value(-3))
    }

    // Rounds the magnitude up to a multiple of 10^-9, as ParseQuantity's `Round(Nano, RoundUp)`.
    fn rounded_to_nano(self) -> Self {
        if self.exponent >= NANO {
            return self;
        }
        Self {
            mantissa: self.scaled_value(NANO),
            exponent: NANO,
        }
    }

    // Strips trailing zeros so equal quantities have one representation.
    fn normalized(mut self) -> Self {
        if self.mantissa == 0 {
            return Self::ZERO;
        }
        while self.mantissa % 10 == 0 && self.exponent < i32::MAX {
            self.mantissa /= 10;
            self.exponent += 1;
        }
        self
    }
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// The suffix as (power of two, power of ten) per `quantitySuffixer.interpret`.
fn suffix_factor(suffix: &str) -> Result<(u32, i32), QuantityError> {
    Ok(match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exponent => {
            let power = exponent
                .strip_prefix(['e', 'E'])
                .filter(|digits| !digits.is_empty())
                .ok_or(QuantityError::Suffix)?;
            (0, power.parse().map_err(|_| QuantityError::Suffix)?)
        }
    })
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// Exact comparison (`Quantity.Cmp`).
    fn cmp(&self, other: &Self) -> Ordering {
        let by_sign = self.mantissa.signum().cmp(&other.mantissa.signum());
        if by_sign != Ordering::Equal || self.mantissa == 0 {
            return by_sign;
        }
        // Bring the one with the larger exponent down to the other's; if that overflows, its
        // magnitude is beyond anything i128 holds and so beyond the other's.
        let (high, low, flipped) = if self.exponent >= other.exponent {
            (self, other, false)
        } else {
            (other, self, true)
        };
        let shift = u32::try_from(i64::from(high.exponent) - i64::from(low.exponent)).ok();
        let ordering = match shift
            .and_then(|s| 10_i128.checked_pow(s))
            .and_then(|f| high.mantissa.checked_mul(f))
        {
            Some(scaled) => scaled.cmp(&low.mantissa),
            None if high.mantissa > 0 => Ordering::Greater,
            None => Ordering::Less,
        };
        if flipped {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

impl fmt::Display for Quantity {
    /// The exact decimal value (`1.5`, `1024`, `0.001`), not upstream's canonical suffix form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exponent >= 0 {
            write!(f, "{}", self.mantissa)?;
            return (0..self.exponent).try_for_each(|_| f.write_str("0"));
        }
        let digits = self.mantissa.unsigned_abs().to_string();
        let places = usize::try_from(-i64::from(self.exponent)).unwrap_or(0);
        let padded = format!("{digits:0>width$}", width = places + 1);
        let (whole, fraction) = padded.split_at(padded.len() - places);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        write!(f, "{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap()
    }

    #[test]
    fn parses_every_suffix_exactly() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("2e3").value(), 2000);
        assert_eq!(q("2E-3").milli_value(), 2);
        assert_eq!(q("1Ei").value(), 1 << 60);
        assert_eq!(q("5n").scaled_value(-9), 5);
        assert_eq!(q("+7k").value(), 7000);
        assert_eq!(q(" 64Mi ").value(), 64 << 20);
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("1.").value(), 1);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("64Ki").value(), 65536);
        assert_eq!(q("5n").milli_value(), 1);
        assert_eq!(q("100m").value(), 1);
    }

    #[test]
    fn rounds_away_from_zero_like_upstream() {
        // ParseQuantity rounds below nano up; Value and MilliValue round up too.
        assert_eq!(q("0.1n").scaled_value(-9), 1);
        assert_eq!(q("1.1").value(), 2);
        assert_eq!(q("-1.1").value(), -2);
        assert_eq!(q("1u").milli_value(), 1);
        assert_eq!(q("0").value(), 0);
    }

    #[test]
    fn rejects_what_upstream_rejects_with_its_messages() {
        let error = |text: &str| Quantity::parse(text).unwrap_err().to_string();
        assert_eq!(error(""), QUANTITY_FORMAT_ERR);
        assert_eq!(error("abc"), QUANTITY_FORMAT_ERR);
        assert_eq!(error("1.2.3"), QUANTITY_FORMAT_ERR);
        assert_eq!(error("1Gix"), QUANTITY_FORMAT_ERR);
        assert_eq!(error("1Xi"), QUANTITY_FORMAT_ERR);
        assert_eq!(error("1Ki2"), QUANTITY_SUFFIX_ERR);
        assert_eq!(error("1kk"), QUANTITY_SUFFIX_ERR);
        assert_eq!(error("1e"), QUANTITY_SUFFIX_ERR);
    }

    #[test]
    fn compares_exactly_across_suffixes() {
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("0.5"), q("500m"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("1m"));
        assert!(q("1e40") > q("99999999999999999999999999999999999999"));
        assert!(q("-1e40") < q("-5"));
        // Floats cannot tell these apart; upstream (and an exact type) can.
        assert!(q("100000000000000001") > q("100000000000000000"));
        assert!(q("0").is_zero() && q("-1m").is_negative());
    }

    #[test]
    fn prints_the_exact_decimal() {
        assert_eq!(q("1.5Gi").to_string(), "1610612736");
        assert_eq!(q("100m").to_string(), "0.1");
        assert_eq!(q("-2e3").to_string(), "-2000");
        assert_eq!(q("0.000000001").to_string(), "0.000000001");
    }
}
