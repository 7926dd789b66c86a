//! Aligned text tables for the terminal.

/// Renders `rows` under `header` with columns padded to their widest cell; columns whose
/// cells are all numbers (starting with a digit or a sign, or `-` for none) are right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let numeric =
        |cell: &str| cell.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
    let right: Vec<bool> = (0..columns)
        .map(|i| {
            i > 0 && !rows.is_empty() && rows.iter().all(|r| r.get(i).is_some_and(|c| numeric(c)))
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let rendered: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if right[i] {
                    format!("{cell:>width$}", width = widths[i])
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        out.push_str(rendered.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let out = table(
            &["SERVICE", "RPS"],
            &[
                vec!["a".into(), "1.0".into()],
                vec!["long-name".into(), "100.0".into()],
            ],
        );
        assert_eq!(
            out,
            "SERVICE      RPS\na            1.0\nlong-name  100.0\n"
        );
    }
}
