-- wrk: every request carries "X-Client: c<i>", i cycling over 1000 values, so a
-- rate-limit rule keyed on that header sees 1000 distinct keys that rarely share a
-- Redis call (scripts/bench/features.sh, config rl-global-keys).
local i = 0
request = function()
    i = (i + 1) % 1000
    return wrk.format(nil, nil, { ["X-Client"] = "c" .. i })
end
