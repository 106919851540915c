#include "pkg08/l08_01.h"
#include "pkg08/l08_00.h"
#include <algorithm>
#include <numeric>

namespace l08_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 73); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 73, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l08_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_01:" + std::to_string(score({seed, seed * 11, 73}));
}
}  // namespace l08_01
