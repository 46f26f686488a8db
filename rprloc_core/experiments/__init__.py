"""The experiments of the paper on a profile's data: each method's cached predictions, and one
function per paper table and figure (`tables`, `figures`), with the findings text computed from
the tables (`findings`). Notebooks call these and nothing below them needs to know a notebook."""
