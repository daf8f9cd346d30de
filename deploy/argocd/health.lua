-- Argo CD health of HostTask and HostGroup (hostprocess.dev) from their kstatus conditions.
-- Installed by argocd-cm.yaml; operator/tests/gitops.rs runs this file against objects in
-- every phase.
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Being deleted"
  return hs
end
if obj.status == nil or obj.status.observedGeneration == nil
    or obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions or {}) do
  conditions[condition.type] = condition
end
local function holds(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
local function message(kind)
  if conditions[kind] ~= nil and conditions[kind].message ~= nil then
    return conditions[kind].message
  end
  return ""
end
if holds("Stalled") then
  hs.status = "Degraded"
  hs.message = message("Stalled")
elseif holds("Paused") then
  hs.status = "Suspended"
  hs.message = message("Paused")
elseif holds("Reconciling") then
  hs.message = message("Reconciling")
elseif holds("Ready") then
  hs.status = "Healthy"
  hs.message = message("Ready")
else
  hs.message = message("Ready")
end
return hs
