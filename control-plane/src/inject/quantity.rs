//! Kubernetes resource quantities (`500m`, `1.5`, `128Mi`, `1e3`), read exactly enough to
//! compare a request with a limit and to round CPU up to whole cores.
//!
//! Written here because k8s-openapi's `Quantity` is only the string and neither kube nor
//! k8s-openapi parses it. The grammar is the API server's (`resource.ParseQuantity`): an
//! optionally signed decimal number, then a binary suffix (`Ki`…`Ei`), a decimal suffix
//! (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).
//! Negative quantities are refused: no resource can be negative. Values are kept in
//! billionths, rounded up, which is finer than the API server keeps resources.

/// A non-negative quantity, in billionths of its unit (nano-cores, nano-bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    nanos: u128,
}

/// Why a text is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not the grammar.
    #[error("not a Kubernetes quantity (a number with an optional suffix, e.g. 500m, 2, 128Mi)")]
    Syntax,
    /// A negative number.
    #[error("negative; a resource cannot be negative")]
    Negative,
    /// Too large to hold.
    #[error("too large")]
    TooLarge,
}

/// Longest number part read: u128 holds 38 decimal digits.
const MAX_DIGITS: usize = 30;
/// Largest decimal exponent accepted either way.
const MAX_EXPONENT: i32 = 60;

impl Quantity {
    /// Parses `text` with the API server's grammar.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let unsigned = match text.as_bytes().first() {
            Some(b'+') => &text[1..],
            Some(b'-') => {
                return match Self::parse(&text[1..]) {
                    Ok(q) if q.nanos == 0 => Ok(q),
                    Ok(_) => Err(QuantityError::Negative),
                    Err(e) => Err(e),
                };
            }
            _ => text,
        };
        let number_len = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(QuantityError::Syntax);
        }
        if whole.len() + fraction.len() > MAX_DIGITS {
            return Err(QuantityError::TooLarge);
        }
        let digits: u128 = format!("{whole}{fraction}")
            .parse()
            .map_err(|_| QuantityError::Syntax)?;
        let (exponent, binary_power) = suffix_scale(suffix)?;
        let fraction_len = i32::try_from(fraction.len()).map_err(|_| QuantityError::TooLarge)?;
        // value = digits × 10^(exponent − fraction digits) × 1024^binary_power; in billionths.
        let mut nanos = digits
            .checked_mul(1024u128.pow(binary_power))
            .ok_or(QuantityError::TooLarge)?;
        let shift = exponent - fraction_len + 9;
        if shift >= 0 {
            let scale = 10u128
                .checked_pow(shift.unsigned_abs())
                .ok_or(QuantityError::TooLarge)?;
            nanos = nanos.checked_mul(scale).ok_or(QuantityError::TooLarge)?;
        } else {
            nanos = match 10u128.checked_pow(shift.unsigned_abs()) {
                Some(scale) => nanos.div_ceil(scale),
                // Below a billionth: anything but zero rounds up to one.
                None => u128::from(nanos > 0),
            };
        }
        Ok(Self { nanos })
    }

    /// Whole units, rounded up (`1500m` → 2 cores, `100m` → 1).
    pub fn ceil_units(self) -> u128 {
        self.nanos.div_ceil(1_000_000_000)
    }
}

/// The decimal exponent and the power of 1024 a suffix stands for.
fn suffix_scale(suffix: &str) -> Result<(i32, u32), QuantityError> {
    let decimal = |e| Ok((e, 0));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => Ok((0, 1)),
        "Mi" => Ok((0, 2)),
        "Gi" => Ok((0, 3)),
        "Ti" => Ok((0, 4)),
        "Pi" => Ok((0, 5)),
        "Ei" => Ok((0, 6)),
        exponent if exponent.starts_with(['e', 'E']) => {
            let digits = &exponent[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Syntax);
            }
            let value: i32 = digits.parse().map_err(|_| QuantityError::TooLarge)?;
            if value.abs() > MAX_EXPONENT {
                return Err(QuantityError::TooLarge);
            }
            decimal(value)
        }
        _ => Err(QuantityError::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> u128 {
        Quantity::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .nanos
    }

    #[test]
    fn decimal_binary_and_exponent_forms_read_as_the_api_server_reads_them() {
        assert_eq!(nanos("1"), 1_000_000_000);
        assert_eq!(nanos("500m"), 500_000_000);
        assert_eq!(nanos("1.5"), 1_500_000_000);
        assert_eq!(nanos(".5"), 500_000_000);
        assert_eq!(nanos("2."), 2_000_000_000);
        assert_eq!(nanos("+250m"), 250_000_000);
        assert_eq!(nanos("1e3"), 1_000_000_000_000);
        assert_eq!(nanos("1E-3"), 1_000_000);
        assert_eq!(nanos("128Mi"), 128 * 1024 * 1024 * 1_000_000_000);
        assert_eq!(nanos("1k"), 1_000_000_000_000);
        assert_eq!(nanos("1E"), 10u128.pow(27), "a bare E is exa");
        assert_eq!(nanos("1n"), 1);
        assert_eq!(nanos("0.1n"), 1, "below a billionth rounds up");
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("-0"), 0);
    }

    #[test]
    fn what_is_not_a_quantity_is_refused_with_the_reason() {
        for text in [
            "", "m", ".", "1..2", "1.2.3", "one", "1 m", " 1", "1mi", "1KiB", "1e", "1e+", "1ee3",
            "0x10", "1,5",
        ] {
            assert_eq!(
                Quantity::parse(text),
                Err(QuantityError::Syntax),
                "{text:?}"
            );
        }
        assert_eq!(Quantity::parse("-1"), Err(QuantityError::Negative));
        assert_eq!(Quantity::parse("-500m"), Err(QuantityError::Negative));
        assert_eq!(
            Quantity::parse("1234567890123456789012345678901"),
            Err(QuantityError::TooLarge)
        );
        assert_eq!(Quantity::parse("1e99"), Err(QuantityError::TooLarge));
        assert_eq!(
            Quantity::parse("999999999999Ei"),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn cores_round_up_to_whole_units() {
        let cores = |t| Quantity::parse(t).unwrap().ceil_units();
        assert_eq!(cores("100m"), 1);
        assert_eq!(cores("1"), 1);
        assert_eq!(cores("1000m"), 1);
        assert_eq!(cores("1001m"), 2);
        assert_eq!(cores("1.5"), 2);
        assert_eq!(cores("0"), 0);
    }

    #[test]
    fn quantities_compare_across_suffixes() {
        let q = |t| Quantity::parse(t).unwrap();
        assert!(q("1Gi") > q("1G"));
        assert!(q("1500m") > q("1"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Ki"), q("1024"));
    }
}
