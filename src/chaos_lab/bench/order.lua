-- POST /orders for wrk: `wrk ... -s order.lua URL -- N` orders spread over products 1..N
-- (N = 1: every order on product 2, the hot row).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local spread = 1

function init(args)
  spread = tonumber(args[1] or "1")
end

function request()
  local id = 2
  if spread > 1 then id = math.random(1, spread) end
  return wrk.format(nil, nil, nil, string.format('{"product_id": %d, "quantity": 1}', id))
end
