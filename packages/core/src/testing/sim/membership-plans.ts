import { type ClusterConfig, isJoint } from '../../configuration.ts';
import type { ChangeMode } from '../../engine/membership-change.ts';
import type { NodeId } from '../../log-entry.ts';
import type { MembershipAction } from './membership-actions.ts';

/** The voters and learners a step of a plan leads to. */
interface Membership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** What a step of a plan sees when it begins. */
interface StepContext {
  /** The committed, non-joint configuration of the leader. */
  readonly config: ClusterConfig;
  readonly leader: NodeId;
  /** The voters the cluster started with, in order. */
  readonly originals: readonly NodeId[];
  /** The servers that started outside the configuration, in order. */
  readonly spares: readonly NodeId[];
}

interface PlanStep {
  readonly what: string;
  readonly mode: ChangeMode;
  /** Fixed when the step begins: later leader changes do not move it. */
  readonly goal: (context: StepContext) => Membership;
  /**
   * Reach the goal's new voters by adding them as learners the leader promotes once caught up,
   * instead of naming them voters in the change.
   */
  readonly promote?: boolean;
}

/** What the voters of the final configuration must be once a plan is done. */
interface PlanEnd {
  readonly what: string;
  readonly holds: (voters: readonly NodeId[], spares: readonly NodeId[]) => boolean;
}

/**
 * A scripted membership workload: the cluster's size, its spare servers, the steps in order,
 * and the voters it ends with.
 */
interface MembershipPlan {
  readonly voters: number;
  readonly spares: number;
  readonly steps: readonly PlanStep[];
  readonly end: PlanEnd;
}

const learnersOf = (config: ClusterConfig): NodeId[] => [...(config.learners ?? [])];
const adding = (id: NodeId) => (c: StepContext) => ({
  voters: [...c.config.voters, id],
  learners: learnersOf(c.config).filter((l) => l !== id),
});
const removing = (id: (c: StepContext) => NodeId) => (c: StepContext) => ({
  voters: c.config.voters.filter((v) => v !== id(c)),
  learners: learnersOf(c.config),
});
const nth = (ids: readonly NodeId[], i: number): NodeId => {
  const id = ids[i];
  if (id === undefined) throw new Error(`the plan needs server #${i + 1}`);
  return id;
};
const aFollower = (c: StepContext): NodeId =>
  c.config.voters.find((v) => v !== c.leader) ?? c.leader;
const sameIds = (a: readonly NodeId[], b: readonly NodeId[]): boolean =>
  a.length === b.length && a.every((id) => b.includes(id));
const voterCount = (n: number): PlanEnd => ({
  what: `${n} voters`,
  holds: (voters) => voters.length === n,
});
const theSpares: PlanEnd = {
  what: 'the spares, every original replaced',
  holds: (voters, spares) => sameIds(voters, spares),
};

/** The scripted membership workloads of the simulator (see {@link MEMBERSHIP_PLANS}). */
export type MembershipPlanName =
  | 'grow'
  | 'shrink'
  | 'replace-one-by-one'
  | 'replace-all-joint'
  | 'remove-leader';

/**
 * The membership workloads of issue 11, each driven to its end under the simulator's faults
 * (Raft paper 6, thesis 4.1 and 4.2.3). Step goals name servers by their place: `originals`
 * are n1.. and `spares` follow them.
 */
const MEMBERSHIP_PLANS: Readonly<Record<MembershipPlanName, MembershipPlan>> = {
  /** 3 -> 5: one learner promoted once caught up, one voter added in one step. */
  grow: {
    voters: 3,
    spares: 2,
    steps: [
      {
        what: 'add the 1st spare as a learner to promote',
        mode: 'auto',
        promote: true,
        goal: (c) => adding(nth(c.spares, 0))(c),
      },
      {
        what: 'add the 2nd spare as a voter in one step',
        mode: 'auto',
        goal: (c) => adding(nth(c.spares, 1))(c),
      },
    ],
    end: voterCount(5),
  },
  /** 5 -> 3: a follower in one step, then the leader through joint consensus. */
  shrink: {
    voters: 5,
    spares: 0,
    steps: [
      { what: 'remove a follower in one step', mode: 'auto', goal: removing(aFollower) },
      {
        what: 'remove the leader through joint consensus',
        mode: 'joint',
        goal: removing((c) => c.leader),
      },
    ],
    end: voterCount(3),
  },
  /** Every original voter replaced, one at a time: add a spare (promoted), remove an original. */
  'replace-one-by-one': {
    voters: 3,
    spares: 3,
    steps: [0, 1, 2].flatMap((i): PlanStep[] => [
      {
        what: `add spare #${i + 1} as a learner to promote`,
        mode: 'auto',
        promote: true,
        goal: (c) => adding(nth(c.spares, i))(c),
      },
      {
        what: `remove original #${i + 1} in one step`,
        mode: 'auto',
        goal: removing((c) => nth(c.originals, i)),
      },
    ]),
    end: theSpares,
  },
  /** Every voter replaced at once: C_old,new with no voter in common, then C_new. */
  'replace-all-joint': {
    voters: 3,
    spares: 3,
    steps: [
      {
        what: 'replace every voter by the spares through joint consensus',
        mode: 'joint',
        goal: (c) => ({ voters: [...c.spares], learners: [] }),
      },
    ],
    end: theSpares,
  },
  /** 5 -> 3 by removing whoever leads, twice, in one step each. */
  'remove-leader': {
    voters: 5,
    spares: 0,
    steps: [1, 2].map(
      (i): PlanStep => ({
        what: `remove the leader (${i === 1 ? 'first' : 'second'} time) in one step`,
        mode: 'auto',
        goal: removing((c) => c.leader),
      }),
    ),
    end: voterCount(3),
  },
};

/**
 * One run of a {@link MembershipPlan}: tells the simulated operator which change to ask the
 * leader for next. A step is done once the leader's configuration is its goal and committed, so
 * a change lost to a crash or a new leader is asked for again.
 */
export class MembershipPlanRun {
  readonly #plan: MembershipPlan;
  readonly #originals: readonly NodeId[];
  readonly #spares: readonly NodeId[];
  #step = 0;
  #goal: Membership | undefined;

  /** `servers`: every simulated server, the initial voters first. */
  constructor(name: MembershipPlanName, servers: readonly NodeId[]) {
    this.#plan = planOf(name);
    this.#originals = servers.slice(0, this.#plan.voters);
    this.#spares = servers.slice(this.#plan.voters);
  }

  get done(): boolean {
    return this.#step >= this.#plan.steps.length;
  }

  /** What the voters of the final configuration must be once the plan is done. */
  get end(): { what: string; holds: (voters: readonly NodeId[]) => boolean } {
    const { what, holds } = this.#plan.end;
    return { what, holds: (voters) => holds(voters, this.#spares) };
  }

  /** Where the run is, for a failure message. */
  describe(): string {
    const step = this.#plan.steps[this.#step];
    if (step === undefined) return 'membership plan done';
    const goal =
      this.#goal === undefined
        ? ''
        : `, goal voters ${this.#goal.voters.join(',')} learners ${this.#goal.learners.join(',') || '-'}`;
    return `membership plan at step ${this.#step + 1}/${this.#plan.steps.length} (${step.what}${goal})`;
  }

  /**
   * The change to ask `leader` for, given its committed configuration in effect; `undefined`
   * while it is joint, a learner waits for its promotion, or the plan is done.
   */
  next(config: ClusterConfig, leader: NodeId): MembershipAction | undefined {
    if (isJoint(config)) return undefined;
    for (;;) {
      const step = this.#plan.steps[this.#step];
      if (step === undefined) return undefined;
      const goal =
        this.#goal ??
        step.goal({ config, leader, originals: this.#originals, spares: this.#spares });
      this.#goal = goal;
      if (sameIds(config.voters, goal.voters) && sameIds(learnersOf(config), goal.learners)) {
        this.#step++;
        this.#goal = undefined;
        continue;
      }
      if (step.promote === true) {
        const learners = learnersOf(config);
        const toAdd = goal.voters.filter(
          (id) => !config.voters.includes(id) && !learners.includes(id),
        );
        // Added already: the leader promotes them once they caught up.
        if (toAdd.length === 0) return undefined;
        return {
          kind: 'change',
          what: step.what,
          change: {
            voters: config.voters,
            learners: [...learners, ...toAdd],
            autoPromote: [...(config.autoPromote ?? []), ...toAdd],
          },
          mode: step.mode,
        };
      }
      return {
        kind: 'change',
        what: step.what,
        change: { voters: goal.voters, learners: goal.learners },
        mode: step.mode,
      };
    }
  }
}

/** The voters and spare servers a plan starts with; a `TypeError` for an unknown plan. */
export function planServers(name: MembershipPlanName): { voters: number; spares: number } {
  const { voters, spares } = planOf(name);
  return { voters, spares };
}

function planOf(name: MembershipPlanName): MembershipPlan {
  if (!Object.hasOwn(MEMBERSHIP_PLANS, name)) {
    throw new TypeError(
      `unknown membership plan "${name}": one of ${Object.keys(MEMBERSHIP_PLANS).join(', ')}`,
    );
  }
  return MEMBERSHIP_PLANS[name];
}
