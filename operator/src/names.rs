//! Node names in messages and Events: the first few, then how many more, so a message about a
//! 5,000-node fleet stays one readable line.

/// `a, b, c and 7 more`: at most `shown` names, then the count of the rest; empty for none.
pub(crate) fn name_list<S: AsRef<str>>(names: &[S], shown: usize) -> String {
    let first: Vec<&str> = names.iter().take(shown).map(AsRef::as_ref).collect();
    match names.len().checked_sub(shown) {
        Some(rest) if rest > 0 => format!("{} and {rest} more", first.join(", ")),
        _ => first.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_names_the_first_and_counts_the_rest() {
        let nodes: Vec<String> = (1..=7).map(|i| format!("win-{i}")).collect();
        assert_eq!(name_list(&nodes, 5), "win-1, win-2, win-3, win-4, win-5 and 2 more");
        assert_eq!(name_list(&nodes[..2], 5), "win-1, win-2");
        assert_eq!(name_list(&nodes[..5], 5), "win-1, win-2, win-3, win-4, win-5");
        assert_eq!(name_list::<String>(&[], 5), "");
    }
}
