#include "pkg04/l04_04.h"
#include "pkg04/l04_03.h"
#include <algorithm>
#include <numeric>

namespace l04_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 40); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 40, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l04_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_04:" + std::to_string(score({seed, seed * 4, 40}));
}
}  // namespace l04_04
