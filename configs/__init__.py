"""vosbench's YAML configs (trainer/, data/, methods/), installed as the package data
`vosbench.configs`, so that `vosbench bench` finds them in a wheel install as in this tree."""
