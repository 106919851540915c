#include "pkg03/l03_02.h"
#include "pkg03/l03_01.h"
#include <algorithm>
#include <numeric>

namespace l03_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 29); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 29, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l03_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_02:" + std::to_string(score({seed, seed * 6, 29}));
}
}  // namespace l03_02
