#!/usr/bin/env node
// The local API on an embedded DynamoDB Local; its settings are environment variables (see README).
import '../dist/main.js';
