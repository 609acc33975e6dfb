// Compiles AgoraLedger.sol with solcjs (the npm registry's `solc` package, installed by
// scripts/setup-tools) and prints the artifact that contracts/artifacts/AgoraLedger.json holds:
// the ABI, the deployable bytecode and how they were made. The build is deterministic: same
// compiler, same settings, the source given by its bare file name (the bytecode's metadata hash
// covers the name, never a path on this machine).
//
//   NODE_PATH=~/.cache/agora/tools/node_modules node contracts/compile.js > contracts/artifacts/AgoraLedger.json
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const NAME = 'AgoraLedger';
const FILE = `${NAME}.sol`;
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'paris',
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
};
const input = {
  language: 'Solidity',
  sources: { [FILE]: { content: fs.readFileSync(path.join(__dirname, FILE), 'utf8') } },
  settings,
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) process.stderr.write(e.formattedMessage + '\n');
if (errors.length) process.exit(1);
const contract = output.contracts[FILE][NAME];
const artifact = {
  contractName: NAME,
  compiler: `solc ${solc.version()}`,
  settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion },
  abi: contract.abi,
  bytecode: '0x' + contract.evm.bytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 2) + '\n');
