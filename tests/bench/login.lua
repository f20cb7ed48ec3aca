-- wrk script: continuous logins of the bench user (argon2id at full cost).
local body = '{"username":"bench","password":"bench password 123","client":"api"}'
request = function()
  return wrk.format("POST", "/v1/session/login", { ["Content-Type"] = "application/json" }, body)
end
