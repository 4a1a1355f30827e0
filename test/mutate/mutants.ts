import ts from "typescript";

/**
 * One mutant: a single source edit, replacing [start, end) of a file by `replacement`. The mutators are
 * those of StrykerJS (same names), reimplemented on the TypeScript AST so one mutant is one small text
 * edit that can be transpiled alone, without building a whole instrumented project.
 */
export interface Mutant {
  /** Path relative to the repository root, e.g. "cluster/raft/core/raft-log.ts". */
  file: string;
  start: number;
  end: number;
  original: string;
  replacement: string;
  mutator: MutatorName;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** The whole source line the edit starts on, trimmed (for reports and for the equivalent-mutant list). */
  lineText: string;
  /** Where the edit starts within `lineText` (0-based), to tell apart equal edits on one line. */
  lineOffset: number;
  /**
   * When the edit lies inside the condition of an `assert(condition, message)` call: that call's message
   * argument as written (whitespace collapsed), which names the invariant. Null otherwise.
   */
  inAssert: string | null;
  /** The enclosing function or method, e.g. "RaftNode.becomeFollower" ("" at top level). */
  scope: string;
}

export type MutatorName =
  | "ArithmeticOperator"
  | "ArrayDeclaration"
  | "AssignmentOperator"
  | "BlockStatement"
  | "BooleanLiteral"
  | "ConditionalExpression"
  | "EqualityOperator"
  | "LogicalOperator"
  | "MethodExpression"
  | "ObjectLiteral"
  | "OptionalChaining"
  | "StringLiteral"
  | "UpdateOperator";

const K = ts.SyntaxKind;

/** Binary operators and what each becomes (Stryker's EqualityOperator includes the boundary shifts). */
const BINARY: Partial<Record<ts.SyntaxKind, { mutator: MutatorName; to: string[] }>> = {
  [K.PlusToken]: { mutator: "ArithmeticOperator", to: ["-"] },
  [K.MinusToken]: { mutator: "ArithmeticOperator", to: ["+"] },
  [K.AsteriskToken]: { mutator: "ArithmeticOperator", to: ["/"] },
  [K.SlashToken]: { mutator: "ArithmeticOperator", to: ["*"] },
  [K.PercentToken]: { mutator: "ArithmeticOperator", to: ["*"] },
  [K.LessThanToken]: { mutator: "EqualityOperator", to: ["<=", ">="] },
  [K.LessThanEqualsToken]: { mutator: "EqualityOperator", to: ["<", ">"] },
  [K.GreaterThanToken]: { mutator: "EqualityOperator", to: [">=", "<="] },
  [K.GreaterThanEqualsToken]: { mutator: "EqualityOperator", to: [">", "<"] },
  [K.EqualsEqualsEqualsToken]: { mutator: "EqualityOperator", to: ["!=="] },
  [K.ExclamationEqualsEqualsToken]: { mutator: "EqualityOperator", to: ["==="] },
  [K.EqualsEqualsToken]: { mutator: "EqualityOperator", to: ["!="] },
  [K.ExclamationEqualsToken]: { mutator: "EqualityOperator", to: ["=="] },
  [K.AmpersandAmpersandToken]: { mutator: "LogicalOperator", to: ["||"] },
  [K.BarBarToken]: { mutator: "LogicalOperator", to: ["&&"] },
  [K.QuestionQuestionToken]: { mutator: "LogicalOperator", to: ["&&"] },
  [K.PlusEqualsToken]: { mutator: "AssignmentOperator", to: ["-="] },
  [K.MinusEqualsToken]: { mutator: "AssignmentOperator", to: ["+="] },
  [K.AsteriskEqualsToken]: { mutator: "AssignmentOperator", to: ["/="] },
  [K.SlashEqualsToken]: { mutator: "AssignmentOperator", to: ["*="] },
};

/** Operators whose result is a boolean: such an expression is also replaced by `true` and `false`. */
const BOOLEAN_OPERATORS = new Set<ts.SyntaxKind>([
  K.LessThanToken,
  K.LessThanEqualsToken,
  K.GreaterThanToken,
  K.GreaterThanEqualsToken,
  K.EqualsEqualsEqualsToken,
  K.ExclamationEqualsEqualsToken,
  K.EqualsEqualsToken,
  K.ExclamationEqualsToken,
  K.AmpersandAmpersandToken,
  K.BarBarToken,
]);

const METHOD_SWAPS = new Map<string, string>(
  Object.entries({
    min: "max",
    max: "min",
    some: "every",
    every: "some",
    startsWith: "endsWith",
    endsWith: "startsWith",
  }),
);
/** Calls that Stryker's MethodExpression removes, leaving the receiver. */
const METHOD_REMOVALS = new Set(["filter", "slice", "sort", "reverse", "trim"]);

/**
 * Call arguments that are only text of an error or assertion message. They are not mutated: the project
 * matches errors by code, never by message text, so a changed message is not a behaviour change a test
 * should pin. The condition of an assert() IS mutated.
 */
const MESSAGE_ARGS: Record<string, number[] | "all"> = {
  assert: [1],
  bad: "all",
  RaftError: [1],
  RaftInvariantError: [0],
  Error: "all",
  RangeError: "all",
  TypeError: "all",
};

/** Every mutant of one TypeScript file, in source order. */
export function findMutants(file: string, text: string): Mutant[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: Mutant[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");

  /** Names of the enclosing class and functions while visiting. */
  const scopes: string[] = [];
  /** [start, end, message] of every assert() condition, to tag the mutants inside one. */
  const asserts: [number, number, string][] = [];
  const add = (start: number, end: number, replacement: string, mutator: MutatorName): void => {
    const original = text.slice(start, end);
    const key = `${start}:${end}:${replacement}`;
    if (original === replacement || seen.has(key)) return;
    seen.add(key);
    const lc = sf.getLineAndCharacterOfPosition(start);
    out.push({
      file,
      start,
      end,
      original,
      replacement,
      mutator,
      line: lc.line + 1,
      column: lc.character + 1,
      lineText: lines[lc.line]!.trim(),
      lineOffset: lc.character - (lines[lc.line]!.length - lines[lc.line]!.trimStart().length),
      inAssert: asserts.find(([s, e]) => start >= s && end <= e)?.[2] ?? null,
      scope: scopes.join("."),
    });
  };
  const addNode = (node: ts.Node, replacement: string, mutator: MutatorName): void =>
    add(node.getStart(sf), node.getEnd(), replacement, mutator);
  const conditionTrueFalse = (cond: ts.Expression, onlyFalse = false): void => {
    if (!onlyFalse) addNode(cond, "true", "ConditionalExpression");
    addNode(cond, "false", "ConditionalExpression");
  };

  const visit = (node: ts.Node): void => {
    if (isSkipped(node)) return;
    if (
      ts.isCallExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === "assert" &&
      node.arguments.length === 2
    ) {
      const [cond, message] = node.arguments as unknown as [ts.Expression, ts.Expression];
      asserts.push([cond.getStart(sf), cond.getEnd(), message.getText(sf).replace(/\s+/g, " ")]);
    }
    mutate(node);
    const name = scopeName(node);
    if (name !== undefined) {
      scopes.push(name);
      ts.forEachChild(node, visit);
      scopes.pop();
      return;
    }
    if (ts.isCallExpression(node) || ts.isNewExpression(node)) {
      ts.forEachChild(node, (child) => {
        const i = node.arguments?.indexOf(child as ts.Expression) ?? -1;
        if (i >= 0 && isMessageArg(node, i)) return;
        visit(child);
      });
      return;
    }
    ts.forEachChild(node, visit);
  };

  const mutate = (node: ts.Node): void => {
    if (ts.isIfStatement(node) || ts.isConditionalExpression(node)) {
      conditionTrueFalse(ts.isIfStatement(node) ? node.expression : node.condition);
    } else if (ts.isWhileStatement(node) || ts.isDoStatement(node)) {
      conditionTrueFalse(node.expression, true);
    } else if (ts.isForStatement(node) && node.condition !== undefined) {
      conditionTrueFalse(node.condition, true);
    } else if (ts.isBinaryExpression(node)) {
      const op = node.operatorToken.kind;
      const rule = BINARY[op];
      const stringConcat =
        op === K.PlusToken && (isStringish(node.left) || isStringish(node.right) || isStringish(node));
      if (rule !== undefined && !stringConcat) {
        for (const to of rule.to)
          add(node.operatorToken.getStart(sf), node.operatorToken.getEnd(), to, rule.mutator);
      }
      if (BOOLEAN_OPERATORS.has(op)) conditionTrueFalse(node);
    } else if (ts.isPrefixUnaryExpression(node)) {
      if (node.operator === K.ExclamationToken) addNode(node, node.operand.getText(sf), "BooleanLiteral");
      else if (node.operator === K.PlusPlusToken)
        addNode(node, `--${node.operand.getText(sf)}`, "UpdateOperator");
      else if (node.operator === K.MinusMinusToken)
        addNode(node, `++${node.operand.getText(sf)}`, "UpdateOperator");
    } else if (ts.isPostfixUnaryExpression(node)) {
      const to = node.operator === K.PlusPlusToken ? "--" : "++";
      addNode(node, `${node.operand.getText(sf)}${to}`, "UpdateOperator");
    } else if (node.kind === K.TrueKeyword) {
      addNode(node, "false", "BooleanLiteral");
    } else if (node.kind === K.FalseKeyword) {
      addNode(node, "true", "BooleanLiteral");
    } else if (ts.isBlock(node) && node.statements.length > 0) {
      addNode(node, "{}", "BlockStatement");
    } else if (ts.isStringLiteral(node) && !isKeyLike(node)) {
      addNode(node, node.text.length > 0 ? '""' : '"Stryker was here!"', "StringLiteral");
    } else if (ts.isArrayLiteralExpression(node)) {
      addNode(node, node.elements.length > 0 ? "[]" : '["Stryker was here"]', "ArrayDeclaration");
    } else if (ts.isObjectLiteralExpression(node) && node.properties.length > 0) {
      addNode(node, "{}", "ObjectLiteral");
    } else if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      const pa = node.expression;
      const name = pa.name.text;
      const swap = METHOD_SWAPS.get(name);
      if (swap !== undefined) add(pa.name.getStart(sf), pa.name.getEnd(), swap, "MethodExpression");
      if (METHOD_REMOVALS.has(name)) addNode(node, pa.expression.getText(sf), "MethodExpression");
    }
    if (
      (ts.isPropertyAccessExpression(node) ||
        ts.isElementAccessExpression(node) ||
        ts.isCallExpression(node)) &&
      node.questionDotToken !== undefined
    ) {
      const q = node.questionDotToken;
      add(q.getStart(sf), q.getEnd(), ts.isPropertyAccessExpression(node) ? "." : "", "OptionalChaining");
    }
  };

  visit(sf);
  return out;
}

/** The source text with the mutant applied. */
export function applyMutant(text: string, m: Mutant): string {
  return text.slice(0, m.start) + m.replacement + text.slice(m.end);
}

/** Code with no runtime effect (types, imports) and message text (template literals) are not mutated. */
function isSkipped(node: ts.Node): boolean {
  return (
    ts.isTypeNode(node) ||
    ts.isInterfaceDeclaration(node) ||
    ts.isTypeAliasDeclaration(node) ||
    ts.isImportDeclaration(node) ||
    ts.isExportDeclaration(node) ||
    ts.isTemplateExpression(node) ||
    ts.isNoSubstitutionTemplateLiteral(node) ||
    ts.isJSDoc(node)
  );
}

/** The name a class, method or named function adds to a mutant's scope. */
function scopeName(node: ts.Node): string | undefined {
  if (
    ts.isClassDeclaration(node) ||
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isGetAccessorDeclaration(node)
  ) {
    return node.name !== undefined && ts.isIdentifier(node.name) ? node.name.text : "(anonymous)";
  }
  if (ts.isConstructorDeclaration(node)) return "constructor";
  return undefined;
}

function isMessageArg(call: ts.CallExpression | ts.NewExpression, index: number): boolean {
  const callee = call.expression;
  const name = ts.isIdentifier(callee) ? callee.text : undefined;
  if (name === undefined) return false;
  const rule = Object.hasOwn(MESSAGE_ARGS, name) ? MESSAGE_ARGS[name] : undefined;
  return rule === "all" || (rule !== undefined && rule.includes(index));
}

function isStringish(e: ts.Node): boolean {
  return ts.isStringLiteral(e) || ts.isTemplateExpression(e) || ts.isNoSubstitutionTemplateLiteral(e);
}

/** A string used as a property name or module specifier, not as a value. */
function isKeyLike(node: ts.StringLiteral): boolean {
  const p = node.parent;
  return (
    (ts.isPropertyAssignment(p) && p.name === node) ||
    ts.isImportDeclaration(p) ||
    ts.isExportDeclaration(p) ||
    ts.isLiteralTypeNode(p)
  );
}
