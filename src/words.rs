//! Words for messages that name a thing by its place rather than quote it (a value that may be a
//! secret: a `-X` flag, an `--auth` credential after a comma).

/// "1st", "2nd", "3rd", "4th", ..., "11th", "12th", "13th", ..., "21st".
pub(crate) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals_take_th_for_eleven_to_thirteen_of_each_hundred() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 111, 112]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "111th", "112th"
            ]
        );
    }
}
