// Validates one Adaptive Card (JSON on stdin) with Microsoft's own parser, the `adaptivecards`
// npm package (its UMD bundle runs under Node.js without a DOM).
//
// Checks: the parser reports no problem while parsing (unknown element types, invalid
// property values) or validating; every property of the input survives the parser's
// round trip (so none was unknown to it; `msteams` on the card, a Teams host extension, is
// the exception); the version is at most `--max-version` (default 1.5, what Teams renders);
// and every action is one of `--actions` (default Action.OpenUrl), wherever it sits.
//
// Prints {"ok", "errors": [...], "version", "actions": [...]} and exits 0 when ok, 1 if not.
"use strict";

const AC = require("adaptivecards/dist/adaptivecards.js");

function args() {
  const out = { maxVersion: "1.5", actions: ["Action.OpenUrl"] };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--max-version") out.maxVersion = argv[++i];
    else if (argv[i] === "--actions") out.actions = argv[++i].split(",");
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return out;
}

function readStdin() {
  return require("fs").readFileSync(0, "utf8");
}

// Properties of `input` that `output` lacks, as JSON paths.
function dropped(input, output, path, errors) {
  if (Array.isArray(input)) {
    if (!Array.isArray(output)) {
      errors.push(`${path} is not kept as a list`);
      return;
    }
    input.forEach((v, i) => dropped(v, output[i], `${path}[${i}]`, errors));
    return;
  }
  if (input !== null && typeof input === "object") {
    if (output === null || typeof output !== "object") {
      errors.push(`${path} is not kept as an object`);
      return;
    }
    for (const key of Object.keys(input)) {
      if (path === "$" && key === "msteams") continue;
      if (!(key in output)) errors.push(`${path}.${key} is not a property the parser knows`);
      else dropped(input[key], output[key], `${path}.${key}`, errors);
    }
  }
}

function main() {
  const opts = args();
  const errors = [];
  let json;
  try {
    json = JSON.parse(readStdin());
  } catch (e) {
    console.log(JSON.stringify({ ok: false, errors: [`not JSON: ${e.message}`] }));
    process.exit(1);
  }
  if (json.type !== "AdaptiveCard") errors.push(`type is ${JSON.stringify(json.type)}, not "AdaptiveCard"`);

  const card = new AC.AdaptiveCard();
  const context = new AC.SerializationContext();
  card.parse(json, context);
  for (let i = 0; i < context.eventCount; i++) {
    const event = context.getEventAt(i);
    errors.push(`parse: ${event.message}`);
  }
  const validation = card.validateProperties();
  for (const event of validation.validationEvents) errors.push(`validate: ${event.message}`);

  const version = card.version ? card.version.toString() : null;
  const max = AC.Version.parse(opts.maxVersion, new AC.SerializationContext());
  if (!card.version || card.version.compareTo(max) > 0) {
    errors.push(`version ${version} is above ${opts.maxVersion}`);
  }

  const actions = card.getAllActions().map((a) => a.getJsonTypeName());
  for (const a of actions) {
    if (!opts.actions.includes(a)) errors.push(`action ${a} is not allowed (only ${opts.actions.join(", ")})`);
  }
  const serialized = card.toJSON();
  dropped(json, serialized, "$", errors);

  console.log(JSON.stringify({ ok: errors.length === 0, errors, version, actions }));
  process.exit(errors.length === 0 ? 0 : 1);
}

main();
